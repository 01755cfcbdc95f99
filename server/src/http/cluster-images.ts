/** `/api/cluster/images`: the images this node named in compute jobs, by content hash, for the cluster's workers. */
import { Router } from 'express';
import type { Refusals } from '../auth/guards.ts';
import { keyMatches } from '../cluster/attach-cluster.ts';
import { CLUSTER_KEY_HEADER, type ClusterNode } from '../cluster/cluster-node.ts';
import type { ImageIndex } from '../cluster/job-queue.ts';
import { apiError } from './api-error.ts';

/**
 * GET /:hash (sha-256 hex) with the cluster's key in `x-sharedlens-cluster-key` (workers read it from Redis):
 * the image bytes, cacheable for good (the hash names them). Without the key: 403, counted; an image this
 * node never named: 404. Mounted before sign-in: workers are processes, not people.
 */
export function clusterImagesRouter(node: ClusterNode, index: ImageIndex, refused: Refusals): Router {
  const router = Router();
  router.get('/:hash', (req, res) => {
    if (!keyMatches(node, req.headers[CLUSTER_KEY_HEADER])) {
      refused.refuse('cluster-key', 'an image request without the cluster key', { address: req.socket.remoteAddress });
      return apiError(res, 403, 'cluster-key', 'this is for the cluster\'s workers: the cluster key is missing or wrong');
    }
    const hash = req.params.hash;
    const file = /^[0-9a-f]{64}$/.test(hash) ? index.file(hash) : undefined;
    if (!file) return apiError(res, 404, 'unknown-image', `this node named no image with hash "${hash.slice(0, 80)}" in a job`);
    res.setHeader('cache-control', 'private, max-age=31536000, immutable');
    res.sendFile(file, (e) => e && !res.headersSent && apiError(res, 404, 'unknown-image', `the image of hash ${hash.slice(0, 12)}... cannot be read: ${e.message}`));
  });
  return router;
}

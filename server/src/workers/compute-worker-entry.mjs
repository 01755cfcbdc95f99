// Worker threads do not inherit the parent's --import hooks on Node 20: register tsx here, then load the worker.
import { register } from 'tsx/esm/api';

register();
await import('./compute-worker.ts');

/** Import direction of the layout in STYLE.md, checked in CI. */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    { name: 'shared-imports-nothing-of-ours', severity: 'error',
      from: { path: '^shared/' }, to: { path: '^(server|client)/' } },
    { name: 'protocol-is-pure', severity: 'error',
      from: { path: '^shared/src/protocol/' }, to: { path: '^(node:|socket\\.io)', dependencyTypes: ['core', 'npm'] } },
    { name: 'client-never-imports-server', severity: 'error',
      from: { path: '^client/' }, to: { path: '^server/' } },
    { name: 'pipeline-no-sinks-or-sockets', severity: 'error',
      from: { path: '^server/src/pipeline/' }, to: { path: '(^server/src/sinks/|socket\\.io|^server/src/sources/)' } },
    { name: 'compute-is-plain', severity: 'error',
      from: { path: '^server/src/compute/' }, to: { path: '(rxjs|socket\\.io|^server/src/(sinks|sources|pipeline)/)' } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};

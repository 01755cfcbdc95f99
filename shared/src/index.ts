export * from './protocol/schemas.ts';
export * from './protocol/events.ts';
export * from './protocol/codec.ts';
export * from './protocol/stats.ts';
export { RigClient, RigError, type RigClientOptions } from './rig-client.ts';
export * from './protocol/dashboard.ts';
export * from './protocol/driver-pairs.ts';

export { Broker } from './broker';
export { listen } from './http/server';
export { loadConfig, parseConfigText, validateConfig } from './config/load';
export { mintDevToken } from './identity/devIssuer';
export { gateClientFrame, describeAllowlist } from './gate/cdpGate';
export { LoupeError } from './errors';

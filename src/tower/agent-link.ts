/**
 * What ksctl's proxy and agent agree on around the tunnel protocol (PROTOCOL.md leaves the upgrade request's
 * authentication out): both roles import these, so neither has to import the other.
 */

/** The path agents connect to. */
export const connectPath = '/connect'
/** The request header that names the agent's cluster; the token travels in Authorization: Bearer. */
export const clusterHeader = 'x-ksctl-cluster'

/**
 * What ksctl's proxy and agent agree on around the tunnel protocol (PROTOCOL.md leaves the upgrade request's
 * authentication and the destination names to the implementation): both roles import these, so neither has to
 * import the other.
 */

/** The path agents connect to. */
export const connectPath = '/connect'
/** The request header that names the agent's cluster; the token travels in Authorization: Bearer. */
export const clusterHeader = 'x-ksctl-cluster'

/** The destination the agent serves itself: the member's kube-apiserver, with the member's credential added. */
export const kubernetesDestination = 'kubernetes'
/** The member's ks-apiserver, which the proxy's per-cluster kubesphere port reaches. */
export const kubesphereDestination = 'kubesphere'

/** Where KubeSphere keeps what ksctl reads and writes (see shared/reference/kubesphere.md). */
export const KUBESPHERE_NAMESPACE = 'kubesphere-system'
export const INSTALLER_CONFIGURATION_NAME = 'ks-installer'
/** 3.x: ks-installer's own Deployment, which 4.x has not. */
export const INSTALLER_DEPLOYMENT_NAME = 'ks-installer'
export const KUBESPHERE_CONFIG_NAME = 'kubesphere-config'
export const KUBESPHERE_CONFIG_KEY = 'kubesphere.yaml'
export const TOWER_SERVICE_NAME = 'tower'
/** KubeSphere 4.x (after 4.1.3): the tower extension's connection settings, when that Secret exists. */
export const TOWER_CONNECTION_SECRET_NAME = 'tower'
export const CLUSTER_CONNECTION_SECRET_TYPE = 'config.kubesphere.io/cluster-connection-config'
export const CLUSTER_CONNECTION_SECRET_KEY = 'configuration.yaml'
/** 4.x: annotations the host writes on the member's kubesphere-system Namespace. */
export const MEMBER_CLUSTER_NAME_ANNOTATION = 'cluster.kubesphere.io/name'
export const MEMBER_HOST_CLUSTER_ANNOTATION = 'cluster.kubesphere.io/host-cluster'
export const HOST_CLUSTER_LABEL = 'cluster-role.kubesphere.io/host'
export const DEFAULT_HOST_CLUSTER_NAME = 'host'
/** 4.x: the tower extension's aggregated API, present when the extension is installed. */
export const TOWER_EXTENSION_API_SERVICE = 'v1alpha1.tower.kubesphere.io'

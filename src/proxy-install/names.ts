import {KUBESPHERE_NAMESPACE} from '../kubesphere/constants.js'
import {PROXY_POD_SELECTOR} from '../tower/proxy/kubernetes/kubernetes-registry.js'

/** What `ksctl proxy install` names on a host (the agreed names: OWNERS.md, docs/deployment.md). */
export const NAMESPACE = KUBESPHERE_NAMESPACE
/** Deployment, ServiceAccount, ClusterRole(Binding) and Role(Binding) of ksctl's proxy. */
export const PROXY_NAME = 'ksctl-tower-proxy'
/** The Role (and its binding) for Events, which the proxy writes where client-go's recorder puts a cluster-scoped object's. */
export const EVENTS_ROLE_NAME = 'ksctl-tower-proxy-events'
export const EVENTS_NAMESPACE = 'default'
/** The record of what was there before the install, for `ksctl proxy uninstall`. */
export const INSTALL_RECORD_NAME = 'ksctl-tower-install'
export const INSTALL_RECORD_KEY = 'record.yaml'
/** Tower's proxy Deployment and the Service members dial (kept by name and ports). */
export const TOWER_NAME = 'tower'
/** The labels of ksctl's proxy pods: the tower Service selects exactly these when the host runs ksctl's runtime. */
export const PROXY_POD_LABELS: Readonly<Record<string, string>> = PROXY_POD_SELECTOR
/** Tower's proxy pods, as Tower's own mc-NAME Services select them (TOWER pkg/proxy/proxy.go addCluster). */
export const TOWER_POD_LABELS: Readonly<Record<string, string>> = {
  app: 'tower',
  'app.kubernetes.io/name': 'tower',
}
/** Labels of every object the install makes. */
export const INSTALL_LABELS: Readonly<Record<string, string>> = {
  'app.kubernetes.io/name': PROXY_NAME,
  'app.kubernetes.io/part-of': 'ksctl',
  'app.kubernetes.io/managed-by': 'ksctl',
}
/** Ports of the proxy container besides the agents' one (the tower Service's target port). */
export const FRONT_END_PORT = 6443
export const METRICS_PORT = 9090

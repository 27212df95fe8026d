import {invalidInput} from '../../errors.js'
import type {ManifestObject} from '../../k8s/manifest-objects.js'
import {KUBESPHERE_NAMESPACE} from '../../kubesphere/constants.js'
import {
  KUBERNETES_PORT_RANGE,
  KUBESPHERE_PORT_OFFSET,
  type PortRange,
} from './kubernetes/cluster-reconcile.js'
import {PROXY_POD_SELECTOR} from './kubernetes/kubernetes-registry.js'

/** The pods of ks-apiserver, in KubeSphere 3.4 and 4.1 alike (config/ks-core/templates/ks-apiserver.yml, .yaml). */
export const KS_APISERVER_POD_LABELS = {app: 'ks-apiserver'}

export interface KubespherePortsPolicyOptions {
  /** Where the proxy runs, with KubeSphere's ks-apiserver (kubesphere-system). */
  namespace?: string
  proxyPodLabels?: Record<string, string>
  /** The proxy's --cluster-ports; each cluster's kubesphere port is 10000 higher. */
  clusterPorts?: PortRange
  /**
   * Every other port the proxy's pod serves, open to all as before: the agents' listener (--listen), the
   * path-routed front end (--front-end), the metrics and probes (--metrics-address). A NetworkPolicy that selects a
   * pod refuses whatever it does not allow, so all of them must be named.
   */
  otherPorts: number[]
}

/**
 * The per-cluster kubesphere ports are plain HTTP without client authentication, as in Tower, because their one
 * caller cannot do better: KubeSphere's host ks-apiserver sends a member's `/clusters/NAME/kapis/…` requests to the
 * Cluster's kubesphereAPIEndpoint with Go's http.DefaultTransport, which presents no client certificate and trusts
 * only the system's CAs (kubesphere/kubesphere v3.4.1 and v4.1.3 pkg/apiserver/filters/multicluster.go, the
 * `else` branch: `transport = http.DefaultTransport`); nothing else in KubeSphere reads that endpoint. So they are
 * kept from everyone but ks-apiserver instead: this NetworkPolicy lets only ks-apiserver's pods (in the proxy's
 * namespace) reach the kubesphere port range, and leaves every other port of the proxy open as it was. Service
 * mc-NAME, a ClusterIP Service, is the only Service that leads to them.
 *
 * It holds only where the cluster's network plugin enforces NetworkPolicy; without one, the ports are as open as
 * Tower's, to the host cluster's pods (never outside: no NodePort or LoadBalancer leads to them), and ks-apiserver
 * still authenticates every request itself (the KubeSphere token).
 */
export function kubespherePortsPolicy(options: KubespherePortsPolicyOptions): ManifestObject {
  const clusterPorts = options.clusterPorts ?? KUBERNETES_PORT_RANGE
  const kubesphere = {
    first: clusterPorts.first + KUBESPHERE_PORT_OFFSET,
    last: clusterPorts.last + KUBESPHERE_PORT_OFFSET,
  }
  const overlapping = options.otherPorts.find((port) => port >= kubesphere.first && port <= kubesphere.last)
  if (overlapping !== undefined) {
    throw invalidInput(
      `port ${overlapping} of the proxy is among the kubesphere ports ${kubesphere.first}-${kubesphere.last}, which only ks-apiserver may reach`,
      ['give the proxy a port outside them, or other --cluster-ports'],
    )
  }
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: {
      name: 'ksctl-tower-proxy-kubesphere-ports',
      namespace: options.namespace ?? KUBESPHERE_NAMESPACE,
    },
    spec: {
      podSelector: {matchLabels: options.proxyPodLabels ?? PROXY_POD_SELECTOR},
      policyTypes: ['Ingress'],
      ingress: [
        {
          from: [{podSelector: {matchLabels: KS_APISERVER_POD_LABELS}}],
          ports: [{protocol: 'TCP', port: kubesphere.first, endPort: kubesphere.last}],
        },
        {
          ports: [
            {protocol: 'TCP', port: clusterPorts.first, endPort: clusterPorts.last},
            ...[...new Set(options.otherPorts)].map((port) => ({protocol: 'TCP', port})),
          ],
        },
      ],
    },
  }
}

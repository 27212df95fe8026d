import type {ClusterClient} from '../k8s/cluster-client.js'
import type {KubeSphereCluster} from '../kubesphere/cluster-object.js'
import {ClusterControllerStandIn, issuedKubeconfigRoute} from './cluster-controller.js'
import {installerPass} from './installer.js'
import {StandInLoop} from './loop.js'

/** What the stand-in plays, in the words the playground prints: it must never pass for KubeSphere. */
export const STAND_IN_ROLES = [
  'ks-installer (3.x): renders the ClusterConfiguration into kubesphere-config and reports status.multicluster',
  "the host's cluster controller: marks a member Cluster Ready only after a request to the member through the proxy succeeded",
] as const

export interface KubeSphereStandInOptions {
  host: ClusterClient
  member: ClusterClient
  /**
   * Where this machine reaches what Service mc-NAME's ClusterIP stands for in a real host: the tower proxy's port
   * for the Cluster, so that the controller's requests go through the proxy and the tunnel.
   */
  memberServer: (cluster: KubeSphereCluster) => string | undefined
  intervalMs: number
  onError?: (error: unknown) => void
}

/**
 * KubeSphere's controllers that the join flow waits on, played on real API servers (KubeSphere itself cannot run
 * here): ks-installer on both clusters, and the host's cluster controller reaching members through the route the
 * real one uses (the kubeconfig the tower proxy issued into the Cluster).
 */
export function startKubeSphereStandIn(options: KubeSphereStandInOptions): StandInLoop {
  const controller = new ClusterControllerStandIn(options.host, {
    route: issuedKubeconfigRoute(options.memberServer),
    requestTimeoutMs: 5000,
  })
  return new StandInLoop(
    [() => installerPass(options.host), () => installerPass(options.member), () => controller.pass()],
    options.intervalMs,
    options.onError,
  ).start()
}

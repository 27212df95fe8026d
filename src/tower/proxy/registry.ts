/**
 * The clusters a tower proxy serves, wherever they come from: a file (standalone mode) or KubeSphere
 * `Cluster` objects (Kubernetes mode). The proxy asks it who may connect and tells it who did.
 */
export interface RegisteredCluster {
  name: string
  /** The agent's credential, compared in constant time; never logged. */
  token: string
  /** Tower-compatible per-cluster front-end ports (HTTPS to kubernetes, HTTP to kubesphere); absent: none. */
  kubernetesPort?: number
  kubespherePort?: number
  /**
   * Addresses clients are given for this cluster's kubernetes port besides the proxy's published names (Service
   * mc-NAME's ClusterIP and DNS names): its serving certificate must hold them.
   */
  serverNames?: string[]
}

export interface AgentPresence {
  /** Live sessions of this cluster after the change. */
  sessions: number
}

/** Why the proxy cannot serve a cluster, in Kubernetes' terms: a CamelCase reason and a sentence. */
export interface ClusterProblem {
  reason: string
  message: string
}

export interface ClusterRegistry {
  list(): RegisteredCluster[]
  get(name: string): RegisteredCluster | undefined
  /** Called whenever the set of clusters or their settings changed (added, removed, token rotated, ports). */
  onChange(listener: () => void): void
  /** A session of `name` authenticated; `sessions` counts it. */
  agentConnected(name: string, presence: AgentPresence): void
  /** A session of `name` ended (closed, dead, or the cluster was removed); `sessions` is what is left. */
  agentDisconnected(name: string, presence: AgentPresence): void
  /** The proxy cannot serve `name` as registered (its port is taken): tell whoever manages the cluster. */
  problem(name: string, problem: ClusterProblem): void
  close(): Promise<void>
}

import type {ClientIdentity} from '../shared/identity.js'

/**
 * The clusters a tower proxy serves, wherever they come from: a file (standalone mode) or KubeSphere
 * `Cluster` objects (Kubernetes mode). The proxy asks it who may connect and tells it who did.
 */
export interface RegisteredCluster {
  name: string
  /** The agent's credential, compared in constant time; never logged. */
  token: string
  /**
   * During a rotation of the token (docs/deployment.md, "Agent tokens"): the one that replaces it, accepted as well
   * from the moment it exists, so that agents can move to it one by one without a gap.
   */
  nextToken?: string
  /** When `token` stops being accepted (ms since the epoch), if tokens of this cluster have a lifetime. */
  tokenExpiresAt?: number
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
  /** Live sessions of this cluster after the change, those that are going away included. */
  sessions: number
  /** Sessions that still take new streams and authenticated with the cluster's `nextToken`. */
  servingOnNextToken: number
  /** Sessions that still take new streams and authenticated with any other token. */
  servingOnOtherTokens: number
}

/** An HTTP request to a member's kube-apiserver, sent through the tunnel. */
export interface TunnelRequest {
  /** Who asks: the agent impersonates it, so the member's RBAC decides what it may do. */
  identity: ClientIdentity
  method: 'GET' | 'PATCH'
  path: string
  /** JSON, sent with `contentType`. */
  body?: unknown
  contentType?: string
}

export interface TunnelResponse {
  status: number
  /** The response body, parsed when it is JSON. */
  body: unknown
}

/**
 * Requests the proxy itself makes to a member through the tunnel: how a rotated token reaches the member's agent.
 */
export interface ClusterTunnel {
  request(cluster: string, request: TunnelRequest): Promise<TunnelResponse>
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
  /** The proxy's tunnel, for registries that send requests to members (Kubernetes mode: token rotation). */
  attachTunnel?(tunnel: ClusterTunnel): void
  /** The proxy cannot serve `name` as registered (its port is taken): tell whoever manages the cluster. */
  problem(name: string, problem: ClusterProblem): void
  close(): Promise<void>
}

import type {ClusterClient} from '../../../k8s/cluster-client.js'
import {ClusterResource} from '../../../k8s/resources.js'
import {KSCTL_AGENT_TOKEN_SECRET} from '../../../kubesphere/agent-manifest.js'
import {
  newAgentToken,
  tokenRenewsAt,
  updateAgentTokenRecord,
  type AgentTokenRecord,
  type AgentTokenState,
} from '../../../kubesphere/agent-token-secret.js'
import type {KubeSphereCluster} from '../../../kubesphere/cluster-object.js'
import {KUBESPHERE_NAMESPACE} from '../../../kubesphere/constants.js'
import type {Logger} from '../../../log.js'
import {redactor} from '../../../redact.js'
import {AGENT_TOKEN_ROTATION_IDENTITY} from '../../shared/identity.js'
import type {AgentPresence, ClusterTunnel} from '../registry.js'
import {NoSessionError} from '../session-pool.js'
import type {ClusterEvents} from './cluster-events.js'

/** Where ksctl's agent keeps its token on a member (templates/agent-ksctl.yaml). */
const memberSecretPath = `/api/v1/namespaces/${KUBESPHERE_NAMESPACE}/secrets/${KSCTL_AGENT_TOKEN_SECRET}`

/** What one step of a rotation did, for the registry: a promotion changes what the proxy accepts. */
export type RotationStep = 'none' | 'requested' | 'delivered' | 'promoted' | 'failed' | 'waiting'

export interface AgentTokenRotationsOptions {
  client: ClusterClient
  namespace: string
  events: ClusterEvents
  log: Logger
  now: () => Date
}

/**
 * Carries out agent token rotations (docs/deployment.md, "Agent tokens"), one step per reconcile pass and cluster:
 *
 * 1. requested: the host Secret holds a next token (`ksctl agent-token rotate`, or the renewal of a token past two
 *    thirds of its lifetime, which this makes). From then on the proxy accepts it beside the current one.
 * 2. delivered: the next token is written into the member's Secret ksctl-tower-agent-token through the tunnel, as
 *    ksctl:agent-token-rotation, which the agent's manifest lets patch that Secret alone. The kubelet updates the
 *    agents' token file; each agent hands its tunnel over to a session on the next token.
 * 3. promoted: once every session that still takes streams is on the next token, it becomes
 *    `Cluster.spec.connection.token`, the old one is refused, and the Secret keeps only the new token's start.
 *
 * A rotation that cannot progress says why on the Secret (annotation) and in a Warning Event on the Cluster, and is
 * tried again on the next pass; it never goes back, because the member may already hold the next token.
 */
export class AgentTokenRotations {
  private tunnel: ClusterTunnel | undefined

  constructor(private readonly options: AgentTokenRotationsOptions) {}

  attachTunnel(tunnel: ClusterTunnel): void {
    this.tunnel = tunnel
  }

  /** One step of `cluster`'s rotation, if one is due or under way. */
  async step(
    cluster: KubeSphereCluster,
    currentToken: string,
    state: AgentTokenState,
    presence: AgentPresence | undefined,
  ): Promise<RotationStep> {
    const now = this.options.now()
    if (state.next === undefined) {
      const renewsAt = tokenRenewsAt(state)
      if (renewsAt === undefined || now < renewsAt) return 'none'
      const next = newAgentToken()
      redactor.register(next)
      const renewing = await this.update(state, (record) =>
        record.next === undefined
          ? {...record, next, requestedAt: now.toISOString(), deliveredAt: undefined, error: undefined}
          : undefined,
      )
      if (!renewing) return 'none'
      this.options.log.info('renewing the agent token of a cluster: two thirds of its lifetime passed', {
        cluster: state.cluster,
      })
      return 'requested'
    }
    redactor.register(state.next)
    // A promotion that stopped between the Cluster and the Secret: only the Secret is left to do.
    if (state.next === currentToken) return this.finish(state, now)
    if (state.deliveredAt === undefined) return this.deliver(cluster, state, presence, now)
    const serving = presence ?? {sessions: 0, servingOnNextToken: 0, servingOnOtherTokens: 0}
    if (serving.servingOnNextToken === 0 || serving.servingOnOtherTokens > 0) return 'waiting'
    return this.promote(state, now)
  }

  private async deliver(
    cluster: KubeSphereCluster,
    state: AgentTokenState,
    presence: AgentPresence | undefined,
    now: Date,
  ): Promise<RotationStep> {
    const failure = await this.writeMemberSecret(state, presence)
    if (failure !== undefined) {
      if (failure !== state.error) {
        await this.update(state, (record) => ({...record, error: failure}))
        await this.options.events.warn(cluster, 'AgentTokenRotationFailed', failure)
        this.options.log.warn('cannot rotate the agent token of a cluster; trying again on the next pass', {
          cluster: state.cluster,
          reason: failure,
        })
      }
      return 'failed'
    }
    await this.update(state, (record) => ({...record, deliveredAt: now.toISOString(), error: undefined}))
    this.options.log.info("wrote the next agent token into the member's Secret through the tunnel", {
      cluster: state.cluster,
    })
    return 'delivered'
  }

  /** Why the next token could not be written to the member, or undefined once it was. */
  private async writeMemberSecret(
    state: AgentTokenState,
    presence: AgentPresence | undefined,
  ): Promise<string | undefined> {
    const noAgent =
      "no agent of the cluster is connected to this proxy: the next token reaches the member through its agent's tunnel; the rotation goes on once one connects"
    if (this.tunnel === undefined || (presence?.sessions ?? 0) === 0) return noAgent
    const secret = `Secret ${KUBESPHERE_NAMESPACE}/${KSCTL_AGENT_TOKEN_SECRET} on the member`
    try {
      const response = await this.tunnel.request(state.cluster, {
        identity: AGENT_TOKEN_ROTATION_IDENTITY,
        method: 'PATCH',
        path: memberSecretPath,
        contentType: 'application/merge-patch+json',
        body: {data: {token: Buffer.from(state.next ?? '').toString('base64')}},
      })
      if (response.status >= 200 && response.status < 300) return undefined
      if (response.status === 404) {
        return `the member has no ${secret}: it runs Tower's agent, which takes its token on its command line and cannot be rotated; move it to ksctl's agent (ksctl member join ${state.cluster} --runtime ksctl --apply)`
      }
      if (response.status === 403) {
        return `the member does not let ${AGENT_TOKEN_ROTATION_IDENTITY.user} patch its ${secret}: apply ksctl's agent manifest again, which grants it (ksctl member join ${state.cluster} --runtime ksctl --apply)`
      }
      return `the member's kube-apiserver answered ${String(response.status)} to the patch of its ${secret}: ${statusMessage(response.body)}`
    } catch (error) {
      if (error instanceof NoSessionError) return noAgent
      return `the patch of the ${secret} failed in the tunnel: ${error instanceof Error ? error.message : String(error)}`
    }
  }

  /** The next token becomes the Cluster's: read the Cluster again, so that the write is guarded by what it holds now. */
  private async promote(state: AgentTokenState, now: Date): Promise<RotationStep> {
    const {client} = this.options
    const cluster = await client.findCustomObject<KubeSphereCluster>(ClusterResource, state.cluster)
    if (cluster === undefined) return 'none'
    await client.patchCustomObject(ClusterResource, state.cluster, {
      strategy: 'merge',
      body: {
        metadata: {resourceVersion: cluster.metadata?.resourceVersion},
        spec: {connection: {token: state.next}},
      },
    })
    return this.finish(state, now)
  }

  private async finish(state: AgentTokenState, now: Date): Promise<RotationStep> {
    await this.update(state, ({lifetime}) => ({
      ...(lifetime !== undefined && {lifetime}),
      issuedAt: now.toISOString(),
    }))
    this.options.log.info(
      'rotated the agent token of a cluster: its agents are on the new token, the old one is refused',
      {
        cluster: state.cluster,
      },
    )
    return 'promoted'
  }

  /**
   * Changes the cluster's record, if it still is the rotation this step was decided on (the same next token):
   * `ksctl agent-token rotate` may have asked for another one meanwhile.
   */
  private update(
    state: AgentTokenState,
    change: (record: AgentTokenRecord) => AgentTokenRecord | undefined,
  ): Promise<boolean> {
    return updateAgentTokenRecord(this.options.client, this.options.namespace, state.cluster, (record) =>
      (record.next ?? undefined) === state.next ? change(record) : undefined,
    )
  }
}

/** The message of a Kubernetes Status, which names the object and the reason, never a Secret's data. */
function statusMessage(body: unknown): string {
  if (typeof body === 'object' && body !== null && 'message' in body && typeof body.message === 'string')
    return body.message
  return 'no message'
}

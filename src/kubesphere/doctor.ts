import type {V1Deployment} from '@kubernetes/client-node'

import type {ClusterClient} from '../k8s/cluster-client.js'
import {kubectl} from '../k8s/kubectl.js'
import {ClusterResource} from '../k8s/resources.js'
import {fingerprint, redactor} from '../redact.js'
import {detectHostRuntime, ksctlProxyAddress, type TunnelRuntime} from './agent-runtime.js'
import {agentArgument} from './cluster-identity.js'
import {conditionOf, memberUidOf, type KubeSphereCluster} from './cluster-object.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'
import {detectKubeSphere, type KubeSphereInfo} from './detect.js'
import {AGENT_DEPLOYMENTS, readMemberAgents, type MemberAgents} from './member-agents.js'
import {probeProxyAddress} from './proxy-probe.js'
import {probeTunnel} from './tunnel-probe.js'

/** `skipped`: the check was not made (it needs what the run was not given); says which and why. */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skipped'

/** One doctor finding. Part of the `--json` contract. */
export interface Finding {
  check: string
  status: CheckStatus
  /** What is wrong (or right). */
  message: string
  /** Why it matters; empty when ok. */
  why?: string
  /** The command or action that fixes it. */
  fix?: string
}

export interface DoctorReport {
  name: string
  hostContext: string
  memberContext?: string
  /** Every check was made and passed: none failed, warned or was skipped. */
  healthy: boolean
  /** The verdict, as the text output's last line says it. */
  summary: string
  findings: Finding[]
}

export interface DoctorOptions {
  /** Where this machine reaches the cluster's kubernetes front end on the proxy (default: the issued kubeconfig's server). */
  tunnelServer?: string | undefined
}

/** Each network check (the proxy address, the tunnel) gives up after this long: a hung agent must not hang doctor. */
const PROBE_TIMEOUT_MS = 5000

/**
 * Every check that explains "Waiting for the cluster to join" (kubesphere.md §8.4): the proxy address,
 * the Cluster's connection settings, the agent on the member and its token, jwtSecrets, the member's role
 * and the Cluster's conditions. Checks that need the member are skipped without a member context.
 */
export async function diagnose(
  host: ClusterClient,
  member: ClusterClient | undefined,
  name: string,
  options: DoctorOptions = {},
): Promise<DoctorReport> {
  const findings: Finding[] = []
  const hostInfo = await detectKubeSphere(host)
  const cluster = await host.findCustomObject<KubeSphereCluster>(ClusterResource, name)
  const hostRuntime = (await detectHostRuntime(host)).runtime
  const [memberInfo, agents] =
    member === undefined
      ? [undefined, undefined]
      : await Promise.all([detectKubeSphere(member), readMemberAgents(member)])
  const agent = agentUnderCheck(agents, hostRuntime)
  // The two network checks wait on time-outs at worst: they run side by side.
  const [proxyAddress, tunnel] = await Promise.all([
    proxyAddressFindings(host, hostInfo),
    tunnelFindings(host, member, name, cluster, agent.deploymentName, options),
  ])
  findings.push(...proxyAddress)
  findings.push(...clusterFindings(host, name, cluster))
  findings.push(...(await duplicateRegistrationFindings(host, name, cluster)))
  if (member !== undefined && memberInfo !== undefined) {
    findings.push(...agentFindings(host, member, name, cluster, agent, hostInfo))
    findings.push(...memberFindings(member, hostInfo, memberInfo, name))
  } else {
    findings.push(memberChecksSkipped(host, name))
  }
  findings.push(...conditionFindings(host, member, name, cluster, agent.deploymentName))
  findings.push(...tunnel)
  const {healthy, summary} = verdict(name, findings)
  return {
    name,
    hostContext: host.context,
    ...(member === undefined ? {} : {memberContext: member.context}),
    healthy,
    summary,
    findings,
  }
}

/** The agent doctor looks at, and how it says who it is. */
interface AgentUnderCheck {
  runtime: TunnelRuntime
  /** The Deployment it runs as: named in every hint, also when it does not exist. */
  deploymentName: string
  deployment: V1Deployment | undefined
  /** The token it dials with: Tower's `--token=` argument, or the decoded token Secret of ksctl's agent. */
  token: string | undefined
}

/**
 * The agent the member runs; while it runs both (a runtime migration) or none, or when it is not looked at (no
 * member context), the agent of the runtime the host runs: the one that can connect.
 */
function agentUnderCheck(agents: MemberAgents | undefined, hostRuntime: TunnelRuntime): AgentUnderCheck {
  const tower = agents?.tower
  const ksctl = agents?.ksctl?.deployment
  const runtime =
    tower !== undefined && ksctl === undefined
      ? 'tower'
      : ksctl !== undefined && tower === undefined
        ? 'ksctl'
        : hostRuntime
  return {
    runtime,
    deploymentName: AGENT_DEPLOYMENTS[runtime],
    deployment: runtime === 'tower' ? tower : ksctl,
    token: runtime === 'tower' ? agentArgument(tower, 'token') : agents?.ksctl?.token,
  }
}

/** Healthy only when every check was made and passed; otherwise which failed, or which were not proven. */
function verdict(name: string, findings: Finding[]): {healthy: boolean; summary: string} {
  const failed = findings.filter((finding) => finding.status === 'fail')
  if (failed.length > 0) {
    return {
      healthy: false,
      summary: `cluster "${name}": ${failed.length} check(s) failed: ${failed.map((finding) => finding.check).join(', ')}`,
    }
  }
  const open = findings.filter((finding) => finding.status === 'warn' || finding.status === 'skipped')
  if (open.length > 0) {
    const listed = open.map(
      (finding) => `${finding.check} (${finding.status === 'warn' ? 'warning' : 'skipped'})`,
    )
    return {
      healthy: false,
      summary: `cluster "${name}": no check failed, but it is not proven healthy: ${listed.join(', ')}`,
    }
  }
  return {healthy: true, summary: `cluster "${name}" is healthy`}
}

/** Without a member context nothing on the member is looked at: say so, and how to include it. */
function memberChecksSkipped(host: ClusterClient, name: string): Finding {
  return {
    check: 'member',
    status: 'skipped',
    message:
      "the member's checks were skipped (no --member-context): the agent Deployment, its token, name and " +
      "proxy address, the member's role and jwtSecret",
    why: 'most reasons a member does not join are on the member',
    fix: `ksctl doctor ${name} --host-context ${host.context} --member-context <member-context>`,
  }
}

async function proxyAddressFindings(host: ClusterClient, info: KubeSphereInfo): Promise<Finding[]> {
  const address = info.proxyAddress.effective
  if (address === undefined) {
    return [
      {
        check: 'proxy address',
        status: 'fail',
        message: 'the host has no proxy address: no proxyPublishAddress and no tower LoadBalancer address',
        why: 'KubeSphere cannot render the agent manifest ("service has no public address"), so no agent can connect',
        fix: `ksctl proxy set-address http://<address>:<port> --context ${host.context}`,
      },
    ]
  }
  const probe = await probeProxyAddress(address, PROBE_TIMEOUT_MS)
  if (probe.kind === 'tower' || probe.kind === 'ksctl') {
    const who =
      probe.kind === 'tower'
        ? "KubeSphere's Tower (an agent's upgrade gets its SSH greeting)"
        : "ksctl's tower proxy (an agent without a token is refused)"
    return [{check: 'proxy address', status: 'ok', message: `${address} answers as a tower proxy: ${who}`}]
  }
  const why =
    'agents must reach the tower proxy at this address from every member node; if this machine is not in ' +
    'their network, check from a member node'
  return [
    probe.kind === 'unreachable'
      ? {
          check: 'proxy address',
          status: 'warn',
          message: `${address} cannot be reached from here (${probe.reason})`,
          why,
          fix: `from a member node: curl -sS ${address}/health`,
        }
      : {
          check: 'proxy address',
          status: 'warn',
          message: `${address} answers, but not as a tower proxy: ${probe.answer}`,
          why: `something else listens there (another service, a load balancer without the proxy behind it); ${why}`,
          fix: `check what the address leads to: ${kubectl(host.context, `-n ${KUBESPHERE_NAMESPACE} get service tower -o wide`)}`,
        },
  ]
}

function clusterFindings(
  host: ClusterClient,
  name: string,
  cluster: KubeSphereCluster | undefined,
): Finding[] {
  if (cluster === undefined) {
    return [
      {
        check: 'cluster',
        status: 'fail',
        message: `cluster "${name}" does not exist on the host`,
        why: 'without the Cluster object the proxy does not know the agent and rejects it',
        fix: `ksctl member join ${name} --host-context ${host.context} --member-context <member>`,
      },
    ]
  }
  const connection = cluster.spec?.connection
  if (connection?.type !== 'proxy' || cluster.spec?.joinFederation !== true) {
    return [
      {
        check: 'cluster',
        status: 'fail',
        message: `cluster "${name}" has connection type "${connection?.type ?? ''}" and joinFederation ${String(cluster.spec?.joinFederation ?? false)}`,
        why: 'the proxy only serves clusters with connection type proxy and joinFederation true; the agent sees "Unauthorized agent"',
        fix: kubectl(
          host.context,
          `patch cluster ${name} --type merge -p '{"spec":{"joinFederation":true,"connection":{"type":"proxy"}}}'`,
        ),
      },
    ]
  }
  return [{check: 'cluster', status: 'ok', message: `cluster "${name}" uses the proxy connection`}]
}

/** Another Cluster on the host standing for the same member (by kube-system UID): one member, two names. */
async function duplicateRegistrationFindings(
  host: ClusterClient,
  name: string,
  cluster: KubeSphereCluster | undefined,
): Promise<Finding[]> {
  const uid = cluster === undefined ? undefined : memberUidOf(cluster)
  if (uid === undefined) return []
  const others = (await host.listCustomObjects<KubeSphereCluster>(ClusterResource))
    .filter((other) => other.metadata?.name !== name && memberUidOf(other) === uid)
    .map((other) => other.metadata?.name ?? '')
  if (others.length === 0) return []
  return [
    {
      check: 'registration',
      status: 'fail',
      message: `the member of cluster "${name}" (kube-system UID ${uid}) is registered under two names: ${[name, ...others].map((n) => `"${n}"`).join(', ')}`,
      why: 'KubeSphere must not import the same cluster twice: both Clusters reach one member, whose agent serves only one of them',
      fix: `keep the Cluster the member's agent connects as, and delete the other: kubectl --context ${host.context} delete cluster ${others[0] ?? ''}`,
    },
  ]
}

function agentFindings(
  host: ClusterClient,
  member: ClusterClient,
  name: string,
  cluster: KubeSphereCluster | undefined,
  {runtime, deploymentName, deployment: agent, token: agentToken}: AgentUnderCheck,
  hostInfo: KubeSphereInfo,
): Finding[] {
  const rerun = `ksctl member join ${name} --host-context ${host.context} --member-context ${member.context} --apply`
  if (agent === undefined) {
    return [
      {
        check: 'agent',
        status: 'fail',
        message: `deployment ${KUBESPHERE_NAMESPACE}/${deploymentName} does not exist on the member`,
        why: 'nothing dials the proxy, so the host cannot reach the member',
        fix: rerun,
      },
    ]
  }
  const findings: Finding[] = []
  const argument = (flag: string) => agentArgument(agent, flag)
  redactor.register(agentToken)
  const clusterToken = cluster?.spec?.connection?.token
  if (clusterToken !== undefined && clusterToken !== '' && agentToken !== clusterToken) {
    findings.push({
      check: 'agent token',
      status: 'fail',
      message: `the agent's token (${agentToken === undefined ? 'none' : fingerprint(agentToken)}) differs from the Cluster's (${fingerprint(clusterToken)})`,
      why: 'the proxy rejects the agent ("Unauthorized agent"); a deleted and re-created Cluster gets a new token',
      fix: rerun,
    })
  }
  if (argument('name') !== name) {
    findings.push({
      check: 'agent name',
      status: 'fail',
      message: `the agent connects as "${argument('name') ?? ''}", not "${name}"`,
      why: 'the proxy knows the agent by the Cluster name and rejects any other',
      fix: rerun,
    })
  }
  const proxyServer = argument('proxy-server')
  const published = hostInfo.proxyAddress.effective
  const expected = published === undefined ? undefined : agentProxyAddress(runtime, published)
  if (published !== undefined && proxyServer !== expected) {
    findings.push({
      check: 'agent proxy address',
      status: 'warn',
      message: `the agent dials ${proxyServer ?? '(nothing)'}, the host publishes ${published}${expected === published ? '' : ` (${expected ?? 'not an address'} for ksctl's agent)`}`,
      why: 'an agent dialing an old address never connects',
      fix: rerun,
    })
  }
  const available =
    agent.status?.conditions?.find((condition) => condition.type === 'Available')?.status === 'True'
  findings.push(
    available
      ? {check: 'agent deployment', status: 'ok', message: `deployment ${deploymentName} is available`}
      : {
          check: 'agent deployment',
          status: 'fail',
          message: `deployment ${KUBESPHERE_NAMESPACE}/${deploymentName} is not available`,
          why: 'its pods are not running: image pull, scheduling or crash',
          fix: `${kubectl(member.context, `-n ${KUBESPHERE_NAMESPACE} describe deployment ${deploymentName}`)}; ${agentLogs(member.context, deploymentName)}`,
        },
  )
  return findings
}

function memberFindings(
  member: ClusterClient,
  hostInfo: KubeSphereInfo,
  memberInfo: KubeSphereInfo,
  name: string,
): Finding[] {
  const findings: Finding[] = []
  const join = `ksctl member join ${name} --host-context <host> --member-context ${member.context}`
  if (hostInfo.edition === '3.x' && memberInfo.role !== 'member') {
    findings.push({
      check: 'member role',
      status: 'fail',
      message: `the member's clusterRole is "${memberInfo.role}", not "member"`,
      why: 'KubeSphere 3.x members run with clusterRole member (and accessTokenMaxAge 0); otherwise the host cannot use them',
      fix: join,
    })
  }
  const hostSecret = hostInfo.jwtSecretFingerprint
  const memberSecret = memberInfo.jwtSecretFingerprint
  if (hostSecret !== undefined && memberSecret !== undefined && hostSecret !== memberSecret) {
    findings.push({
      check: 'jwtSecret',
      status: 'fail',
      message: `the member's jwtSecret (${memberSecret}) differs from the host's (${hostSecret})`,
      why: 'the member rejects the users the host signed in ("signature is invalid", pages redirect to login)',
      fix:
        hostInfo.edition === '3.x'
          ? join
          : 'annotate the Cluster with kubesphere.io/ks-core-action=reinstall so the host reinstalls ks-core with its secret',
    })
  } else if (hostSecret !== undefined && memberSecret !== undefined) {
    findings.push({
      check: 'jwtSecret',
      status: 'ok',
      message: `host and member share jwtSecret ${hostSecret}`,
    })
  }
  return findings
}

/**
 * Where the agent dials, from the address the host publishes: as published for Tower's agent, as wss:// on the same
 * host and port for ksctl's (agent-runtime.ts); undefined when the published address is not one.
 */
function agentProxyAddress(runtime: TunnelRuntime, published: string): string | undefined {
  if (runtime === 'tower') return published
  try {
    return ksctlProxyAddress(published, 'the published proxy address')
  } catch {
    return undefined
  }
}

/** The agent's log on the member, the first place to look when it does not connect or does not serve. */
function agentLogs(memberContext: string, deploymentName: string): string {
  return kubectl(memberContext, `-n ${KUBESPHERE_NAMESPACE} logs deployment/${deploymentName}`)
}

function conditionFindings(
  host: ClusterClient,
  member: ClusterClient | undefined,
  name: string,
  cluster: KubeSphereCluster | undefined,
  agentDeployment: string,
): Finding[] {
  if (cluster === undefined) return []
  const findings: Finding[] = []
  const look = kubectl(host.context, `get cluster ${name} -o yaml`)
  const initialized = conditionOf(cluster, 'Initialized')
  if (initialized?.status !== 'True') {
    findings.push({
      check: 'condition Initialized',
      status: 'fail',
      message: 'the proxy has not initialized the cluster (no token, ports or Service yet)',
      why: 'the agent has no token to connect with',
      fix: `check the proxy: ${kubectl(host.context, `-n ${KUBESPHERE_NAMESPACE} logs deployment/tower`)}`,
    })
  }
  const agent = conditionOf(cluster, 'AgentAvailable')
  const ready = conditionOf(cluster, 'Ready')
  if (agent?.status !== 'True') {
    findings.push({
      check: 'condition AgentAvailable',
      status: 'fail',
      message: `no agent is connected to the proxy${agent?.message === undefined ? '' : ` (${agent.message})`}`,
      why: 'the host reaches the member only through a connected agent',
      fix: `check the agent's log on the member: ${agentLogs(member?.context ?? '<member-context>', agentDeployment)}`,
    })
  }
  if (ready?.status === 'True' && agent?.status !== 'True') {
    findings.push({
      check: 'condition Ready',
      status: 'fail',
      message: 'the cluster is marked Ready although no agent is connected: the condition is stale',
      why: 'the console shows a member that cannot be reached as healthy',
      fix: look,
    })
  } else if (ready?.status !== 'True') {
    findings.push({
      check: 'condition Ready',
      status: 'fail',
      message: `the cluster is not Ready${ready?.message === undefined ? '' : `: ${ready.message}`}`,
      why: 'the console keeps showing "Waiting for the cluster to join"',
      fix: `${look}; and the host's ks-controller-manager log`,
    })
  } else {
    findings.push({
      check: 'condition Ready',
      status: 'ok',
      message: `the cluster is Ready${agent?.status === 'True' ? ' and the proxy reports an agent (AgentAvailable)' : ''}`,
    })
  }
  return findings
}

/**
 * Proves the tunnel with a request to the member through the proxy, when the proxy says an agent is there:
 * AgentAvailable stays True while an agent hangs or its link is cut, until the connection closes.
 */
async function tunnelFindings(
  host: ClusterClient,
  member: ClusterClient | undefined,
  name: string,
  cluster: KubeSphereCluster | undefined,
  agentDeployment: string,
  options: DoctorOptions,
): Promise<Finding[]> {
  if (cluster?.spec?.connection?.type !== 'proxy') return []
  if (conditionOf(cluster, 'AgentAvailable')?.status !== 'True') {
    return [{check: 'tunnel', status: 'skipped', message: 'not checked: the proxy reports no agent'}]
  }
  const probe = await probeTunnel({
    name,
    issuedKubeconfig: cluster.spec.connection.kubeconfig,
    server: options.tunnelServer,
    host: host.config,
    timeoutMs: PROBE_TIMEOUT_MS,
  })
  const memberContext = member?.context ?? '<member-context>'
  switch (probe.kind) {
    case 'answered':
      return [
        {
          check: 'tunnel',
          status: 'ok',
          message: `a request through the proxy reached the member's kube-apiserver (${probe.kubernetesVersion}) in ${probe.ms} ms, through ${probe.via}`,
        },
      ]
    case 'broken':
      return [
        {
          check: 'tunnel',
          status: 'fail',
          message: `the proxy reports an agent (AgentAvailable True), but a request to the member through it failed: ${probe.reason} (through ${probe.via})`,
          why: 'the proxy clears AgentAvailable only when the connection closes: a hung or cut-off agent keeps it True while nothing reaches the member',
          fix: `check the agent: ${agentLogs(memberContext, agentDeployment)}; restart it: ${kubectl(memberContext, `-n ${KUBESPHERE_NAMESPACE} rollout restart deployment/${agentDeployment}`)}`,
        },
      ]
    case 'unchecked':
      return [
        {
          check: 'tunnel',
          status: 'warn',
          message: `the tunnel to the member could not be checked from here, so AgentAvailable True is the proxy's word only: ${probe.reasons.join('; ')}`,
          why: 'a hung or cut-off agent keeps AgentAvailable True until its connection closes',
          fix:
            `forward a port to the proxy and check through it: ${kubectl(host.context, `-n ${KUBESPHERE_NAMESPACE} port-forward service/mc-${name} 16443:6443`)}; ` +
            `then ksctl doctor ${name} --host-context ${host.context} --member-context ${memberContext} --tunnel-server https://127.0.0.1:16443`,
        },
      ]
  }
}

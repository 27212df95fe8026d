import {connect} from 'node:net'

import type {V1Deployment} from '@kubernetes/client-node'

import type {ClusterClient} from '../k8s/cluster-client.js'
import {ClusterResource} from '../k8s/resources.js'
import {fingerprint, redactor} from '../redact.js'
import {AGENT_DEPLOYMENT_NAME} from './agent-manifest.js'
import {agentArgument} from './cluster-identity.js'
import {conditionOf, memberUidOf, type KubeSphereCluster} from './cluster-object.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'
import {detectKubeSphere, type KubeSphereInfo} from './detect.js'

export type CheckStatus = 'ok' | 'warn' | 'fail'

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
  healthy: boolean
  findings: Finding[]
}

const REACHABILITY_TIMEOUT_MS = 3000

/**
 * Every check that explains "Waiting for the cluster to join" (kubesphere.md §8.4): the proxy address,
 * the Cluster's connection settings, the agent on the member and its token, jwtSecrets, the member's role
 * and the Cluster's conditions. Checks that need the member are skipped without a member context.
 */
export async function diagnose(
  host: ClusterClient,
  member: ClusterClient | undefined,
  name: string,
): Promise<DoctorReport> {
  const findings: Finding[] = []
  const hostInfo = await detectKubeSphere(host)
  findings.push(...(await proxyAddressFindings(host, hostInfo)))
  const cluster = await host.findCustomObject<KubeSphereCluster>(ClusterResource, name)
  findings.push(...clusterFindings(host, name, cluster))
  findings.push(...(await duplicateRegistrationFindings(host, name, cluster)))
  if (member !== undefined) {
    const [memberInfo, agent] = await Promise.all([
      detectKubeSphere(member),
      member.findDeployment(KUBESPHERE_NAMESPACE, AGENT_DEPLOYMENT_NAME),
    ])
    findings.push(...agentFindings(host, member, name, cluster, agent, hostInfo))
    findings.push(...memberFindings(member, hostInfo, memberInfo, name))
  }
  findings.push(...conditionFindings(host, name, cluster))
  return {
    name,
    hostContext: host.context,
    ...(member === undefined ? {} : {memberContext: member.context}),
    healthy: findings.every((finding) => finding.status !== 'fail'),
    findings,
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
  const reachable = await canConnect(address)
  return [
    reachable
      ? {check: 'proxy address', status: 'ok', message: `${address} accepts connections from here`}
      : {
          check: 'proxy address',
          status: 'warn',
          message: `${address} does not accept connections from here`,
          why: 'agents must reach this address from every member node; if this machine is not in their network, check from a member node',
          fix: `from a member node: curl -sS ${address}/health`,
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
        fix: `kubectl --context ${host.context} patch cluster ${name} --type merge -p '{"spec":{"joinFederation":true,"connection":{"type":"proxy"}}}'`,
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
  agent: V1Deployment | undefined,
  hostInfo: KubeSphereInfo,
): Finding[] {
  const rerun = `ksctl member join ${name} --host-context ${host.context} --member-context ${member.context} --apply`
  if (agent === undefined) {
    return [
      {
        check: 'agent',
        status: 'fail',
        message: `deployment ${KUBESPHERE_NAMESPACE}/${AGENT_DEPLOYMENT_NAME} does not exist on the member`,
        why: 'nothing dials the proxy, so the host cannot reach the member',
        fix: rerun,
      },
    ]
  }
  const findings: Finding[] = []
  const argument = (flag: string) => agentArgument(agent, flag)
  const agentToken = argument('token')
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
  if (hostInfo.proxyAddress.effective !== undefined && proxyServer !== hostInfo.proxyAddress.effective) {
    findings.push({
      check: 'agent proxy address',
      status: 'warn',
      message: `the agent dials ${proxyServer ?? '(nothing)'}, the host publishes ${hostInfo.proxyAddress.effective}`,
      why: 'an agent dialing an old address never connects',
      fix: rerun,
    })
  }
  const available =
    agent.status?.conditions?.find((condition) => condition.type === 'Available')?.status === 'True'
  findings.push(
    available
      ? {check: 'agent deployment', status: 'ok', message: `deployment ${AGENT_DEPLOYMENT_NAME} is available`}
      : {
          check: 'agent deployment',
          status: 'fail',
          message: `deployment ${KUBESPHERE_NAMESPACE}/${AGENT_DEPLOYMENT_NAME} is not available`,
          why: 'its pods are not running: image pull, scheduling or crash',
          fix: `kubectl --context ${member.context} -n ${KUBESPHERE_NAMESPACE} describe deployment ${AGENT_DEPLOYMENT_NAME}; kubectl --context ${member.context} -n ${KUBESPHERE_NAMESPACE} logs deployment/${AGENT_DEPLOYMENT_NAME}`,
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

function conditionFindings(
  host: ClusterClient,
  name: string,
  cluster: KubeSphereCluster | undefined,
): Finding[] {
  if (cluster === undefined) return []
  const findings: Finding[] = []
  const look = `kubectl --context ${host.context} get cluster ${name} -o yaml`
  const initialized = conditionOf(cluster, 'Initialized')
  if (initialized?.status !== 'True') {
    findings.push({
      check: 'condition Initialized',
      status: 'fail',
      message: 'the proxy has not initialized the cluster (no token, ports or Service yet)',
      why: 'the agent has no token to connect with',
      fix: `check the proxy: kubectl --context ${host.context} -n ${KUBESPHERE_NAMESPACE} logs deployment/tower`,
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
      fix: `check the agent's log on the member: kubectl -n ${KUBESPHERE_NAMESPACE} logs deployment/${AGENT_DEPLOYMENT_NAME}`,
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
      message: `the cluster is Ready${agent?.status === 'True' ? ' with an agent connected' : ''}`,
    })
  }
  return findings
}

function canConnect(address: string): Promise<boolean> {
  const url = new URL(address)
  const port = Number(url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : url.port)
  return new Promise((resolve) => {
    const socket = connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port,
      timeout: REACHABILITY_TIMEOUT_MS,
    })
    const done = (result: boolean) => {
      socket.destroy()
      resolve(result)
    }
    socket.once('connect', () => done(true))
    socket.once('timeout', () => done(false))
    socket.once('error', () => done(false))
  })
}

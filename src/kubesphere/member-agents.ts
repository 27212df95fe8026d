import type {KubernetesObject, V1Deployment} from '@kubernetes/client-node'

import type {ClusterClient} from '../k8s/cluster-client.js'
import {allInOrder} from '../promises.js'
import {redactor} from '../redact.js'
import {
  AGENT_DEPLOYMENT_NAME,
  KSCTL_AGENT_LABELS,
  KSCTL_AGENT_NAME,
  KSCTL_AGENT_TOKEN_SECRET,
} from './agent-manifest.js'
import type {TunnelRuntime} from './agent-runtime.js'
import {agentArgument} from './cluster-identity.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'

/**
 * The agents a member runs: Tower's (Deployment cluster-agent), ksctl's (Deployment ksctl-tower-agent, its token in
 * a Secret), both while a runtime migration is under way (runtime-migration.ts), or none.
 */
export interface MemberAgents {
  tower: V1Deployment | undefined
  ksctl: KsctlAgent | undefined
}

/** What ksctl's agent left on a member: its Deployment, or its token Secret, or both. */
export interface KsctlAgent {
  deployment: V1Deployment | undefined
  /** Key `token` of Secret ksctl-tower-agent-token, decoded (and so registered with the redactor). */
  token: string | undefined
}

/** The Deployment each runtime's agent runs as. */
export const AGENT_DEPLOYMENTS: Record<TunnelRuntime, string> = {
  tower: AGENT_DEPLOYMENT_NAME,
  ksctl: KSCTL_AGENT_NAME,
}

/**
 * Reads both agents. An object named as ksctl's that does not carry ksctl's agent labels is someone else's and does
 * not count (Tower's objects carry no such mark; its Deployment is recognised by name, as KubeSphere does).
 */
export async function readMemberAgents(member: ClusterClient): Promise<MemberAgents> {
  const [tower, ksctlDeployment, tokenSecret] = await allInOrder([
    member.findDeployment(KUBESPHERE_NAMESPACE, AGENT_DEPLOYMENT_NAME),
    member.findDeployment(KUBESPHERE_NAMESPACE, KSCTL_AGENT_NAME),
    member.findSecret(KUBESPHERE_NAMESPACE, KSCTL_AGENT_TOKEN_SECRET),
  ] as const)
  redactor.register(agentArgument(tower, 'token'))
  const deployment = isKsctlAgentObject(ksctlDeployment) ? ksctlDeployment : undefined
  const token = isKsctlAgentObject(tokenSecret) ? tokenSecret?.data.token : undefined
  return {
    tower,
    ksctl: deployment === undefined && token === undefined ? undefined : {deployment, token},
  }
}

/** Whether `object` carries the labels of ksctl's agent (templates/agent-ksctl.yaml): ksctl made it for its agent. */
export function isKsctlAgentObject(object: Pick<KubernetesObject, 'metadata'> | undefined): boolean {
  const labels = object?.metadata?.labels ?? {}
  return Object.entries(KSCTL_AGENT_LABELS).every(([key, value]) => labels[key] === value)
}

/** The agent Deployments the member runs, Tower's first, with the runtime of each. */
export function runningAgents(agents: MemberAgents): {runtime: TunnelRuntime; deployment: V1Deployment}[] {
  return [
    ...(agents.tower === undefined ? [] : [{runtime: 'tower' as const, deployment: agents.tower}]),
    ...(agents.ksctl?.deployment === undefined
      ? []
      : [{runtime: 'ksctl' as const, deployment: agents.ksctl.deployment}]),
  ]
}

/**
 * The token each agent carries: Tower's in its `--token=` argument, ksctl's in its Secret (its arguments name only
 * the file the Secret is mounted as).
 */
export function agentTokens(agents: MemberAgents): string[] {
  return [agentArgument(agents.tower, 'token'), agents.ksctl?.token].filter(
    (token): token is string => token !== undefined && token !== '',
  )
}

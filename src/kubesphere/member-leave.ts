import {isDeepStrictEqual} from 'node:util'

import type {KubernetesObject, V1Namespace, V1Preconditions} from '@kubernetes/client-node'

import {describeObject, invalidInput, KsctlError, preconditionFailed, type ObjectRef} from '../errors.js'
import {editWrites, requireAccess, type PlannedWrite} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import type {DryRun} from '../k8s/dry-run.js'
import {ManifestObjects, type ManifestObject} from '../k8s/manifest-objects.js'
import {applyEdit, previewEdit, type EditOutcome, type ObjectEdit} from '../k8s/object-edit.js'
import {ClusterResource, resourceName} from '../k8s/resources.js'
import {log} from '../log.js'
import {allInOrder} from '../promises.js'
import {
  KSCTL_AGENT_LABELS,
  KSCTL_AGENT_NAME,
  ksctlAgentObjectRefs,
  TOWER_AGENT_SERVICE_ACCOUNT,
  towerAgentObjectRefs,
} from './agent-manifest.js'
import {detectHostRuntime, type HostRuntime} from './agent-runtime.js'
import type {KubeSphereCluster} from './cluster-object.js'
import {
  KUBESPHERE_NAMESPACE,
  MEMBER_CLUSTER_NAME_ANNOTATION,
  MEMBER_HOST_CLUSTER_ANNOTATION,
} from './constants.js'
import {detectKubeSphere, requireComplete, type Edition} from './detect.js'
import {installerSpecEdit, setIn} from './edits.js'
import {requireKubeSphereHost} from './host-check.js'
import {INSTALLER_LOGS_COMMAND} from './host-init.js'
import {
  finalizationProbeWrites,
  needsFinalization,
  probeFinalization,
  waitUntilClusterGone,
} from './cluster-finalization.js'
import {agentArgument, kubeSystemUid} from './cluster-identity.js'
import {
  checkClusterIdentity,
  hostClusterRefused,
  isHostCluster,
  readMemberOrForce,
  verifyMember,
  type MemberState,
} from './member-leave-checks.js'
import {isKsctlAgentObject, runningAgents, type MemberAgents} from './member-agents.js'

export interface MemberLeaveOptions {
  name: string
  dryRun: DryRun
  /** The user's `--timeout`, when given: the limit of the wait for KubeSphere to finish deleting the Cluster. */
  waitTimeoutMs?: number | undefined
  /** When the member cannot be reached: remove the host's Cluster anyway, and say what the member keeps. */
  force: boolean
  /**
   * Asked once, after every check and before the first change, with what is about to change; `false`
   * stops with nothing changed. Not asked on a dry run, nor when there is nothing to do.
   */
  confirm: (question: string) => Promise<boolean>
}

/** What `ksctl member leave` did or would do. Part of the `--json` contract. */
export interface MemberLeaveResult {
  name: string
  hostContext: string
  memberContext: string
  dryRun: boolean
  /**
   * Every step on both clusters, in order: the member's agent, the host's Cluster, the member's own
   * settings. A step with nothing left to do has `changed: false` and says why (`already removed`).
   */
  changes: EditOutcome[]
  /** What the user should know: what is kept on purpose, what was left behind and why. */
  notes: string[]
}

const ALREADY_REMOVED = 'already removed'
const SERVICE_ACCOUNT = TOWER_AGENT_SERVICE_ACCOUNT
const CLUSTER_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/

/**
 * Removes a member from its host: the host's Cluster first, waiting until KubeSphere has finished deleting
 * it (its controller reaches the member through the agent), then the agent on the member, then (3.x) the
 * member's clusterRole, or (4.x) the member's record of the host. Every check comes before any change: the
 * Cluster must be this member's (by kube-system UID) and not the host's own, the user must have the rights
 * for every write, and KubeSphere must be able to finish the Cluster's deletion. Each step deletes or edits
 * one object with optimistic concurrency, so a second run finds everything already removed and changes
 * nothing.
 */
export async function memberLeave(
  host: ClusterClient,
  member: ClusterClient,
  options: MemberLeaveOptions,
): Promise<MemberLeaveResult> {
  const {name} = options
  if (name.length > 253 || !CLUSTER_NAME.test(name)) {
    throw invalidInput(`NAME "${name}" is not a cluster name`, [
      `list the host's clusters with: ksctl status --context ${host.context}`,
    ])
  }
  const plan = await planLeave(host, member, options)
  let changes = await runSteps(plan.steps, (step) => step.preview())
  const pending = changes.filter((change) => change.changed)
  const probe = options.dryRun === 'client' ? undefined : plan.probe
  await requireAccess(
    [
      ...plan.steps.flatMap((step, index) => {
        const change = changes[index]
        return change === undefined ? [] : editWrites(step.client, change)
      }),
      ...(probe?.writes ?? []),
    ],
    options.dryRun,
  )
  await probe?.run()
  if (options.dryRun !== 'client' && pending.length > 0) {
    if (options.dryRun === false && !(await options.confirm(confirmationQuestion(name, pending)))) {
      throw new KsctlError('not confirmed: nothing was changed', {code: 'INTERRUPTED'})
    }
    changes = await runSteps(plan.steps, async (step) => {
      const outcome = await step.apply(options.dryRun === 'server')
      if (outcome.changed && options.dryRun === false)
        log.info(`${outcome.context === host.context ? 'host' : 'member'}: ${outcome.summary}`)
      return outcome
    })
  }
  const notesOfApplied = plan.steps.flatMap((step, index) =>
    !options.dryRun && changes[index]?.changed === true && step.noteWhenApplied !== undefined
      ? [step.noteWhenApplied]
      : [],
  )
  return {
    name,
    hostContext: host.context,
    memberContext: member.context,
    dryRun: options.dryRun !== false,
    changes,
    notes: [...plan.notes, ...notesOfApplied],
  }
}

/** One step of leaving. `alreadyDone` replaces the summary of a step that finds nothing to do. */
interface LeaveStep {
  /** The cluster the step changes. */
  client: ClusterClient
  preview(): Promise<EditOutcome>
  /** Applies the step; with `dryRun`, as a server dry run. */
  apply(dryRun: boolean): Promise<EditOutcome>
  alreadyDone: string
  /** A note that holds once this step has changed something for real. */
  noteWhenApplied?: string
}

interface LeavePlan {
  steps: LeaveStep[]
  notes: string[]
  /** A check made after the access review and before any change (see cluster-finalization.ts). */
  probe?: {writes: PlannedWrite[]; run(): Promise<void>}
}

async function planLeave(
  host: ClusterClient,
  member: ClusterClient,
  options: MemberLeaveOptions,
): Promise<LeavePlan> {
  const {name} = options
  const hostInfo = await detectKubeSphere(host)
  requireComplete(hostInfo)
  const {edition, hostClusterName} = requireKubeSphereHost(host, hostInfo, [
    `pass the context of the host that cluster "${name}" belongs to as --host-context`,
  ])
  const [cluster, hostUid] = await allInOrder([
    host.findCustomObject<KubeSphereCluster>(ClusterResource, name),
    kubeSystemUid(host),
  ] as const)
  if (name === hostClusterName || (cluster !== undefined && isHostCluster(cluster))) {
    throw hostClusterRefused(host, name)
  }
  const state = await readMemberOrForce(host, member, options.name, options.force)
  if (state !== undefined) requireComplete(state.info)
  const plan: LeavePlan = {steps: [], notes: []}
  // The Cluster goes first and the agent once KubeSphere has let the Cluster go: its controller reaches
  // the member through the agent to finish (cluster-finalization.ts).
  plan.steps.push(clusterRemovalStep(host, member, name, state, options.waitTimeoutMs))
  if (state === undefined) {
    plan.notes.push(unreachableMemberNote(host, member, name, edition, await detectHostRuntime(host)))
    if ((cluster?.metadata?.finalizers ?? []).length > 0) {
      plan.notes.push(
        `KubeSphere's controller finishes deleting cluster "${name}" (finalizer ${(cluster?.metadata?.finalizers ?? []).join(', ')}); ` +
          'on KubeSphere 3.4 its Cluster webhook admits that only while the member is reachable through the agent, ' +
          'so with the member gone the Cluster can stay listed, marked for deletion',
      )
    }
  } else {
    if (state.uid === hostUid) {
      throw preconditionFailed(
        `--host-context "${host.context}" and --member-context "${member.context}" are the same cluster ` +
          `(kube-system UID ${hostUid})`,
        member.context,
        ["pass the member cluster's context as --member-context"],
      )
    }
    verifyMember(host, member, name, cluster, state)
    if (needsFinalization(cluster)) {
      plan.probe = {
        writes: finalizationProbeWrites(host, name),
        run: () => probeFinalization(host, cluster, member.context),
      }
    }
    plan.steps.push(...(await agentRemovalSteps(member, edition, state.agents, plan.notes)))
  }
  if (state !== undefined) {
    addMemberSettingsSteps(
      plan,
      {host, member, name, edition, hostClusterName, clusterFound: cluster !== undefined},
      state,
    )
  }
  return plan
}

/**
 * One object an agent's manifest made. `owner`, when the name alone does not make it the agent's: how to tell
 * (an object of that name that is not the agent's is left alone).
 */
interface AgentObject {
  object: ManifestObject
  owner?: {
    isOwn(current: KubernetesObject): boolean
    /** Why one that is not: "does not bind …, so it is not the agent's". */
    notOwn: string
    /** What one that stopped being the agent's after the check no longer does: "binds …". */
    ownedBecause: string
  }
}

/**
 * What Tower's agent manifest put on the member ({@link towerAgentObjectRefs}); the binding `tower` only if it binds
 * the agent's ServiceAccount.
 */
function towerAgentObjects(edition: Edition): AgentObject[] {
  return towerAgentObjectRefs(edition).map((object) =>
    object.kind === 'ClusterRoleBinding'
      ? {
          object,
          owner: {
            isOwn: isAgentBinding,
            notOwn: `does not bind the agent's ServiceAccount ${KUBESPHERE_NAMESPACE}/${SERVICE_ACCOUNT}, so it is not the agent's`,
            ownedBecause: "binds the agent's ServiceAccount",
          },
        }
      : {object},
  )
}

/**
 * What ksctl's agent manifest put on the member (templates/agent-ksctl.yaml and the RBAC of shared/identity.ts),
 * Deployment first. Each is ksctl's only if it carries the labels of ksctl's agent.
 */
function ksctlAgentObjects(): AgentObject[] {
  const labels = Object.entries(KSCTL_AGENT_LABELS)
    .map(([key, value]) => `${key}=${value}`)
    .join(', ')
  const owner = {
    isOwn: isKsctlAgentObject,
    notOwn: `does not carry the labels of ksctl's agent (${labels}), so it is not ksctl's`,
    ownedBecause: "carries the labels of ksctl's agent",
  }
  // A PodDisruptionBudget that ksctl rendered before it labelled one is known by what it guards: ksctl's agent's pods.
  const budgetOwner = {
    ...owner,
    isOwn: (current: KubernetesObject) => isKsctlAgentObject(current) || guardsKsctlAgentPods(current),
  }
  return ksctlAgentObjectRefs().map((object) => ({
    object,
    owner: object.kind === 'PodDisruptionBudget' ? budgetOwner : owner,
  }))
}

function guardsKsctlAgentPods(budget: KubernetesObject): boolean {
  const selector = (budget as {spec?: {selector?: {matchLabels?: Record<string, string>}}}).spec?.selector
  return isDeepStrictEqual(selector, {matchLabels: {'app.kubernetes.io/name': KSCTL_AGENT_NAME}})
}

/**
 * The objects of the agents the member runs, as removal steps: Tower's when it runs Tower's agent (or no agent of
 * ksctl's, so that a second run reports them as already removed), ksctl's when anything of ksctl's agent is left.
 * Both agents' Deployments go first, so that neither dials while the rest goes; never the kubesphere-system
 * Namespace (the member's own KubeSphere may live in it). An object of an agent's name that is not the agent's is
 * left alone, with a note.
 */
async function agentRemovalSteps(
  member: ClusterClient,
  edition: Edition,
  agents: MemberAgents,
  notes: string[],
): Promise<LeaveStep[]> {
  const manifest = new ManifestObjects(member)
  const read = async (objects: AgentObject[]) => {
    const found: {agentObject: AgentObject; current: KubernetesObject | undefined}[] = []
    for (const agentObject of objects) {
      found.push({agentObject, current: await manifest.find<KubernetesObject>(agentObject.object)})
    }
    return found
  }
  const ksctl = await read(ksctlAgentObjects())
  const ksctlLeft = ksctl.some(({agentObject, current}) => isAgents(agentObject, current))
  const tower = agents.tower !== undefined || !ksctlLeft ? await read(towerAgentObjects(edition)) : []
  const both = [...tower, ...(ksctlLeft ? ksctl : [])]
  const deploymentsFirst = [
    ...both.filter(({agentObject}) => agentObject.object.kind === 'Deployment'),
    ...both.filter(({agentObject}) => agentObject.object.kind !== 'Deployment'),
  ]
  const steps: LeaveStep[] = []
  for (const {agentObject, current} of deploymentsFirst) {
    const {object, owner} = agentObject
    const ref = manifest.ref(object)
    if (current !== undefined && owner !== undefined && !owner.isOwn(current)) {
      notes.push(`${describeObject(ref)} in context "${member.context}" ${owner.notOwn}: left alone`)
      continue
    }
    const guard = owner === undefined ? undefined : requireOwner(member, ref, owner)
    const edit = removalEdit(member, ref, `delete ${object.kind} ${object.metadata.name}`, {
      read: () => manifest.find<KubernetesObject>(object),
      remove: (preconditions, dryRun) => manifest.remove(object, preconditions, dryRun),
      ...(guard === undefined ? {} : {guard}),
    })
    steps.push(leaveStep(edit, ALREADY_REMOVED))
  }
  return steps
}

/** Whether `current` (present) is the agent's object, as its owner check says; without one, by its name. */
function isAgents(agentObject: AgentObject, current: KubernetesObject | undefined): boolean {
  return current !== undefined && (agentObject.owner?.isOwn(current) ?? true)
}

/**
 * The host's Cluster, checked again at each attempt; without `state` (member unreachable) by label only.
 * A real run then waits until KubeSphere has finished deleting it.
 */
function clusterRemovalStep(
  host: ClusterClient,
  member: ClusterClient,
  name: string,
  state: MemberState | undefined,
  waitTimeoutMs: number | undefined,
): LeaveStep {
  const edit = removalEdit<KubeSphereCluster>(
    host,
    {resource: resourceName(ClusterResource), group: ClusterResource.group, name},
    `delete Cluster ${name}`,
    {
      read: () => host.findCustomObject<KubeSphereCluster>(ClusterResource, name),
      remove: (preconditions, dryRun) =>
        host.deleteCustomObject(ClusterResource, name, undefined, preconditions, dryRun),
      guard: (current) => checkClusterIdentity(host, member, current, state?.uid),
    },
  )
  const step = leaveStep(edit, ALREADY_REMOVED)
  return {
    ...step,
    async apply(dryRun) {
      const outcome = await step.apply(dryRun)
      // Unreachable (--force), the member keeps its agent anyway: nothing to wait for.
      if (!dryRun && state !== undefined) await waitUntilClusterGone(host, name, waitTimeoutMs)
      return outcome
    },
  }
}

/**
 * 3.x: the member's clusterRole back to none, once something shows it was this cluster (the host's
 * Cluster, its agent, or the name the host wrote into its config). 4.x: the annotations through which
 * the member names its host, which the host's controller would remove itself, through the agent, had the
 * agent not gone first.
 */
function addMemberSettingsSteps(
  plan: LeavePlan,
  where: {
    host: ClusterClient
    member: ClusterClient
    name: string
    edition: Edition
    hostClusterName: string
    /** The host still had the member's Cluster, and it was checked to be this member's. */
    clusterFound: boolean
  },
  state: MemberState,
): void {
  const {host, member, name, edition, hostClusterName} = where
  if (edition === '4.x') {
    plan.steps.push(leaveStep(hostRecordEdit(member, name, hostClusterName), 'no annotation names this host'))
    if (state.info.installed) {
      plan.notes.push(
        `KubeSphere (ks-core), which the host installed on the member, stays; if the member should not run it: ` +
          `helm --kube-context ${member.context} -n ${KUBESPHERE_NAMESPACE} uninstall ks-core`,
      )
    }
    return
  }
  if (state.info.edition !== '3.x') return
  const role = state.info.role
  const knownAsThisCluster =
    where.clusterFound ||
    runningAgents(state.agents).some(({deployment}) => agentArgument(deployment, 'name') === name) ||
    state.info.memberClusterName === name
  if (role === 'member' && !knownAsThisCluster) {
    plan.notes.push(
      `the member's clusterRole is still member, but nothing on host context "${host.context}" shows that it was ` +
        `cluster "${name}"; if it should leave multicluster, set spec.multicluster.clusterRole to none in its ` +
        `ClusterConfiguration: kubectl --context ${member.context} -n ${KUBESPHERE_NAMESPACE} edit cc ks-installer`,
    )
    return
  }
  if (role === 'host') return
  const roleEdit = installerSpecEdit(member, 'set spec.multicluster.clusterRole back to none', (spec) => {
    if (clusterRoleOf(spec) === 'member') setIn(spec, ['multicluster', 'clusterRole'], 'none')
  })
  plan.steps.push({
    ...leaveStep(roleEdit, 'clusterRole is already none'),
    noteWhenApplied:
      'ks-installer now re-runs on the member to apply the role; follow it with: ' +
      INSTALLER_LOGS_COMMAND.replace('kubectl', `kubectl --context ${member.context}`),
  })
  plan.notes.push(
    "the member keeps the host's jwtSecret (spec.authentication.jwtSecret of its ClusterConfiguration): that is " +
      'harmless once it has left, and ksctl leaves it alone so that the sessions signed with it stay valid',
  )
}

/**
 * 4.x: the host's controller records itself on the member's kubesphere-system Namespace; only annotations
 * that name this cluster (and this host, or none) are removed, the Namespace itself stays.
 */
function hostRecordEdit(
  member: ClusterClient,
  name: string,
  hostClusterName: string,
): ObjectEdit<V1Namespace> {
  return {
    client: member,
    object: {resource: 'namespaces', name: KUBESPHERE_NAMESPACE},
    summary: `remove the annotations that make it cluster "${name}" of host "${hostClusterName}"`,
    read: () => member.findNamespace(KUBESPHERE_NAMESPACE),
    change(current) {
      const annotations = current?.metadata?.annotations
      const recordedHost = annotations?.[MEMBER_HOST_CLUSTER_ANNOTATION]
      if (
        current?.metadata === undefined ||
        annotations?.[MEMBER_CLUSTER_NAME_ANNOTATION] !== name ||
        (recordedHost !== undefined && recordedHost !== hostClusterName)
      ) {
        return current
      }
      const hostRecord = [MEMBER_CLUSTER_NAME_ANNOTATION, MEMBER_HOST_CLUSTER_ANNOTATION]
      current.metadata.annotations = Object.fromEntries(
        Object.entries(annotations).filter(([key]) => !hostRecord.includes(key)),
      )
      return current
    },
    write: (desired, _current, dryRun) => member.replaceNamespace(desired, dryRun),
  }
}

/**
 * An edit that deletes the object it reads, with its uid and resourceVersion as preconditions: the server
 * refuses (a conflict, then a fresh read and check) if the object changed after it was checked. An object
 * already gone, or already being deleted, is left as it is.
 */
function removalEdit<T extends KubernetesObject>(
  client: ClusterClient,
  object: ObjectRef,
  summary: string,
  access: {
    read: () => Promise<T | undefined>
    remove: (preconditions: V1Preconditions, dryRun: boolean) => Promise<unknown>
    /** Throws when the object is not one to delete. */
    guard?: (current: T) => void
  },
): ObjectEdit<T> {
  return {
    client,
    object,
    summary,
    read: access.read,
    change(current) {
      if (current === undefined || current.metadata?.deletionTimestamp !== undefined) return current
      access.guard?.(current)
      return undefined
    },
    write: () => Promise.reject(new Error(`internal error: "${summary}" only deletes`)),
    remove: async (current, dryRun) => {
      await access.remove(
        {uid: current.metadata?.uid, resourceVersion: current.metadata?.resourceVersion},
        dryRun,
      )
    },
  }
}

function leaveStep<T extends object>(edit: ObjectEdit<T>, alreadyDone: string): LeaveStep {
  return {
    client: edit.client,
    preview: () => previewEdit(edit),
    apply: (dryRun) => applyEdit(edit, {dryRun}),
    alreadyDone,
  }
}

async function runSteps(
  steps: LeaveStep[],
  run: (step: LeaveStep) => Promise<EditOutcome>,
): Promise<EditOutcome[]> {
  const outcomes: EditOutcome[] = []
  for (const step of steps) {
    const outcome = await run(step)
    outcomes.push(outcome.changed ? outcome : {...outcome, summary: step.alreadyDone})
  }
  return outcomes
}

function confirmationQuestion(name: string, pending: EditOutcome[]): string {
  const changes = pending.map((change) => `${change.summary} in context "${change.context}"`)
  return `remove cluster "${name}": ${changes.join(', ')}?`
}

/**
 * What the member keeps when it cannot be reached: the agent of the runtime the host runs (the only one that can
 * connect to it), whose objects ksctl could not look at.
 */
function unreachableMemberNote(
  host: ClusterClient,
  member: ClusterClient,
  name: string,
  edition: Edition,
  hostRuntime: HostRuntime,
): string {
  const manifest = new ManifestObjects(member)
  const left =
    hostRuntime.runtime === 'ksctl'
      ? [
          `${describeObject({resource: 'deployments', group: 'apps', name: KSCTL_AGENT_NAME, namespace: KUBESPHERE_NAMESPACE})} and the other ` +
            `objects of ksctl's agent (labelled app.kubernetes.io/name=${KSCTL_AGENT_NAME})`,
        ]
      : towerAgentObjects(edition).map(({object}) => describeObject(manifest.ref(object)))
  if (edition === '3.x') left.push("its ClusterConfiguration's clusterRole member")
  return (
    `the member of context "${member.context}" could not be reached, so nothing was removed there: ` +
    `${left.join(', ')} stay (the agent keeps dialing and the proxy refuses it); once it is reachable, ` +
    `remove them with: ksctl member leave ${name} --host-context ${host.context} --member-context ${member.context}`
  )
}

function isAgentBinding(binding: KubernetesObject): boolean {
  const subjects =
    (binding as {subjects?: {kind?: string; name?: string; namespace?: string}[]}).subjects ?? []
  return subjects.some(
    (subject) =>
      subject.kind === 'ServiceAccount' &&
      subject.name === SERVICE_ACCOUNT &&
      subject.namespace === KUBESPHERE_NAMESPACE,
  )
}

function requireOwner(
  member: ClusterClient,
  ref: ObjectRef,
  owner: NonNullable<AgentObject['owner']>,
): (current: KubernetesObject) => void {
  return (current) => {
    if (!owner.isOwn(current)) {
      throw preconditionFailed(
        `${describeObject(ref)} in context "${member.context}" changed and no longer ${owner.ownedBecause}`,
        member.context,
        ['run the command again'],
      )
    }
  }
}

function clusterRoleOf(spec: Record<string, unknown>): unknown {
  const multicluster = spec.multicluster
  return typeof multicluster === 'object' && multicluster !== null
    ? (multicluster as Record<string, unknown>).clusterRole
    : undefined
}

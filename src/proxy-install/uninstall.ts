import type {V1Service} from '@kubernetes/client-node'

import {KsctlError} from '../errors.js'
import {requireAccess} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import type {DryRun} from '../k8s/dry-run.js'
import type {EditOutcome} from '../k8s/object-edit.js'
import type {Edition} from '../kubesphere/detect.js'
import {
  migrateMembersToTowerAgent,
  notSwitchedError,
  unmovedMembers,
} from '../kubesphere/runtime-migration.js'
import {log} from '../log.js'
import {isProxyCluster} from '../tower/proxy/kubernetes/cluster-reconcile.js'
import {plain, type HostObject, type ObjectHeader} from './host-objects.js'
import {readHostState, recordHeader, type HostState} from './host-state.js'
import {restoredObject, sameRecordedParts, recordObject, type RecordedObject} from './install-record.js'
import {proxyClusterAgents} from './member-agents.js'
import {INSTALL_RECORD_NAME, NAMESPACE, PROXY_NAME, PROXY_POD_LABELS, TOWER_POD_LABELS} from './names.js'
import {waitForPodsGone} from './pods-gone.js'
import {named, removeStep, replaceStep, type Step} from './steps.js'

export interface ProxyUninstallOptions {
  dryRun: DryRun
  /**
   * Go back without moving the members on ksctl's agent to Tower's first (they lose their connection until joined
   * again): for members whose tunnel does not work.
   */
  force: boolean
  confirm: (question: string) => Promise<boolean>
  /** The user's `--timeout`, when given: the limit of the wait for ksctl's proxy pods to stop. */
  waitTimeoutMs?: number | undefined
}

/** What `ksctl proxy uninstall` did or would do. Part of the `--json` contract: add fields, never rename. */
export interface ProxyUninstallResult {
  context: string
  edition: Edition
  dryRun: boolean
  /** False when there was no install to undo (nothing was changed). */
  installed: boolean
  changes: EditOutcome[]
  /** Proxy Clusters whose members run ksctl's agent: they need Tower's agent again (`--force` went ahead). */
  ksctlAgentClusters: string[]
  notes: string[]
}

const KSCTL_SERVICE_LABEL = 'app.kubernetes.io/managed-by=ksctl-tower'
const SERVICE_CLUSTER_LABEL = 'ksctl.io/cluster'

/**
 * Undoes `ksctl proxy install` from its record: the tower Service's selector, ksctl's Deployment deleted and its pods
 * gone, each mc-NAME Service as it was (those ksctl's proxy made later in Tower's form), Tower's replicas, then the
 * objects the install made and the record last. Every step is idempotent and the record goes last, so a run that
 * failed midway is continued by running it again.
 */
export async function uninstallProxy(
  client: ClusterClient,
  options: ProxyUninstallOptions,
): Promise<ProxyUninstallResult> {
  const host = await readHostState(client)
  const base = {context: client.context, edition: host.edition, dryRun: options.dryRun !== false}
  if (host.record === undefined) {
    return {
      ...base,
      installed: false,
      changes: [],
      ksctlAgentClusters: [],
      notes: [
        `no configmap ${NAMESPACE}/${INSTALL_RECORD_NAME}: ksctl proxy install has not run here; nothing to undo`,
      ],
    }
  }
  const {record} = host.record
  const ksctlAgents = proxyClusterAgents(host.clusters, host.caPem)
    .filter((agent) => agent.agent === 'ksctl')
    .map((agent) => agent.name)
  const {steps, proxyRemoved} = await uninstallSteps(host, record.replaced, record.created)
  await requireAccess(
    steps.flatMap((step) => step.writes),
    options.dryRun,
  )
  const notes: string[] = []
  // Members on ksctl's agent are moved back to Tower's through ksctl's tunnel, unless --force: then they lose
  // their connection until joined again.
  const moveMembers = ksctlAgents.length > 0 && !options.force
  if (ksctlAgents.length > 0)
    notes.push(
      moveMembers
        ? `members on ksctl's agent get Tower's agent again, through ksctl's tunnel before the switch: ${ksctlAgents.join(', ')}`
        : `members on ksctl's agent lose their connection until joined again with Tower's agent: ${ksctlAgents.join(', ')}`,
    )
  if (options.dryRun === 'client') {
    const changes = []
    for (const step of steps) changes.push(await step.preview())
    return {...base, installed: true, changes, ksctlAgentClusters: ksctlAgents, notes}
  }
  if (
    options.dryRun === false &&
    !(await options.confirm(
      `put Tower's proxy back on context "${client.context}": the tower Service, Deployment tower and the mc-NAME Services as they were, and delete ksctl's proxy?`,
    ))
  ) {
    throw new KsctlError('not confirmed: nothing was changed', {code: 'INTERRUPTED'})
  }

  const serverDryRun = options.dryRun === 'server'
  const changes: EditOutcome[] = []
  const switchProxy = async (): Promise<void> => {
    for (const step of steps) {
      let outcome: EditOutcome
      try {
        outcome = (await step.run(serverDryRun)).outcome
      } catch (error) {
        const failure = error instanceof KsctlError ? error : undefined
        throw new KsctlError(
          `could not ${step.summary}: ${error instanceof Error ? error.message : String(error)}; the steps before it are done, and running the same command again continues from here (the record stays until the end)`,
          {
            code: failure?.code ?? 'API_ERROR',
            ...(failure?.context === undefined ? {} : {context: failure.context}),
            ...(failure?.object === undefined ? {} : {object: failure.object}),
            suggestions: [
              ...(failure?.suggestions ?? []),
              `ksctl proxy uninstall --context ${client.context}`,
            ],
            cause: error,
          },
        )
      }
      changes.push(outcome)
      if (outcome.changed && !serverDryRun) log.info(step.summary)
      if (step === proxyRemoved && !serverDryRun)
        await waitForPodsGone(client, PROXY_POD_LABELS, "ksctl's proxy", options.waitTimeoutMs)
    }
  }
  if (!moveMembers || serverDryRun) await switchProxy()
  else {
    const report = await migrateMembersToTowerAgent(client, {switchProxy, say: (line) => log.info(line)})
    changes.push(...report.members.flatMap((member) => member.changes))
    if (!report.switched) {
      throw notSwitchedError(
        client,
        report,
        "every member was left on ksctl's agent and ksctl's proxy still runs: nothing was changed on the host",
        `or go back anyway with --force, then join them again with Tower's agent: ksctl member join NAME --runtime tower --host-context ${client.context} --member-context MEMBER --apply`,
      )
    }
    const failed = unmovedMembers(report)
    for (const member of failed)
      notes.push(`member not finished after the switch: ${member.name}: ${member.error ?? 'failed'}`)
  }
  return {...base, installed: true, changes, ksctlAgentClusters: ksctlAgents, notes}
}

/** The steps of an uninstall, and the one after which ksctl's proxy pods must be gone. */
async function uninstallSteps(
  host: HostState,
  replaced: RecordedObject[],
  created: ObjectHeader[],
): Promise<{steps: Step[]; proxyRemoved?: Step}> {
  const {objects} = host
  const restore = async (recorded: RecordedObject, summary: string): Promise<Step[]> => {
    const current = await objects.find(recorded)
    if (current === undefined) return []
    const now = {...current, apiVersion: recorded.apiVersion, kind: recorded.kind}
    if (sameRecordedParts(recordObject(now), recorded)) return []
    return [replaceStep(objects, now, restoredObject(now, recorded), summary)]
  }
  const recordedService = replaced.find(
    (object) => object.kind === 'Service' && object.metadata.name === 'tower',
  )
  const recordedTower = replaced.find((object) => object.kind === 'Deployment')
  const recordedClusterServices = replaced.filter(
    (object) => object.kind === 'Service' && object.metadata.name !== 'tower',
  )
  const steps: Step[] = []
  if (recordedService !== undefined)
    steps.push(...(await restore(recordedService, "point the tower Service at Tower's proxy again")))
  const proxyDeployment = await objects.find({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {name: PROXY_NAME, namespace: NAMESPACE},
  })
  let proxyRemoved: Step | undefined
  if (proxyDeployment !== undefined) {
    const remove = removeStep(
      objects,
      {...proxyDeployment, apiVersion: 'apps/v1', kind: 'Deployment'},
      "delete ksctl's proxy (Deployment)",
    )
    steps.push(remove)
    proxyRemoved = remove
  }
  for (const recorded of recordedClusterServices)
    steps.push(...(await restore(recorded, `put Service ${recorded.metadata.name} back as Tower had it`)))
  steps.push(
    ...(await towerFormSteps(host, new Set(recordedClusterServices.map((object) => object.metadata.name)))),
  )
  if (recordedTower !== undefined) steps.push(...(await restore(recordedTower, "scale Tower's proxy back")))
  for (const header of [...created].reverse()) {
    if (header.kind === 'Deployment') continue
    const current = await objects.find(header)
    if (current !== undefined)
      steps.push(
        removeStep(
          objects,
          {...current, apiVersion: header.apiVersion, kind: header.kind},
          `delete ${named(header as HostObject)}`,
        ),
      )
  }
  const recordMap = await objects.find(recordHeader)
  if (recordMap !== undefined)
    steps.push(
      removeStep(objects, {...recordMap, apiVersion: 'v1', kind: 'ConfigMap'}, 'delete the install record'),
    )
  return {steps, ...(proxyRemoved === undefined ? {} : {proxyRemoved})}
}

/**
 * mc-NAME Services that ksctl's proxy made after the install (not in the record): in Tower's form for a proxy
 * Cluster, since Tower never looks at the Service of an Initialized Cluster again; deleted when their Cluster is gone.
 */
async function towerFormSteps(host: HostState, recorded: Set<string>): Promise<Step[]> {
  const services = await host.client.listServices(NAMESPACE, KSCTL_SERVICE_LABEL)
  const proxyClusters = new Set(
    host.clusters.filter(isProxyCluster).map((cluster) => cluster.metadata?.name ?? ''),
  )
  const steps: Step[] = []
  for (const service of services) {
    const name = service.metadata?.name ?? ''
    if (recorded.has(name)) continue
    const current = {...(plain(service) as HostObject & V1Service), apiVersion: 'v1', kind: 'Service'}
    const cluster = service.metadata?.labels?.[SERVICE_CLUSTER_LABEL] ?? name.replace(/^mc-/, '')
    steps.push(
      proxyClusters.has(cluster)
        ? replaceStep(
            host.objects,
            current,
            towerForm(current),
            `give Service ${name} to Tower (its selector and labels)`,
          )
        : removeStep(host.objects, current, `delete Service ${name} (its Cluster is gone)`),
    )
  }
  return steps
}

/** Service mc-NAME as Tower makes it (TOWER v0.2.1 pkg/proxy/proxy.go addCluster), keeping its address and ports. */
export function towerForm<T extends HostObject & V1Service>(service: T): T {
  const name = service.metadata.name
  const labels = Object.fromEntries(
    Object.entries(service.metadata.labels ?? {}).filter(
      ([key]) => key !== 'app.kubernetes.io/managed-by' && key !== SERVICE_CLUSTER_LABEL,
    ),
  )
  const form = structuredClone(service)
  form.metadata = {...form.metadata, labels: {...labels, 'app.kubernetes.io/name': name, app: name}}
  form.spec = {...form.spec, selector: {...TOWER_POD_LABELS}}
  return form
}

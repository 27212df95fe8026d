import type {V1Deployment} from '@kubernetes/client-node'

import {KsctlError} from '../errors.js'
import {requireAccess} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import type {DryRun} from '../k8s/dry-run.js'
import {kubectl} from '../k8s/kubectl.js'
import type {ManifestObject} from '../k8s/manifest-objects.js'
import type {EditOutcome} from '../k8s/object-edit.js'
import type {Edition} from '../kubesphere/detect.js'
import {log} from '../log.js'
import {certificateFingerprint} from '../pki/certificates.js'
import {HostObjects, type HostObject} from './host-objects.js'
import {readHostState, type HostState} from './host-state.js'
import {headerOf, recordConfigMap, recordObject, type InstallRecord} from './install-record.js'
import {
  proxyClusterAgents,
  moveMembersToKsctlAgent,
  refuseMigration,
  type MemberMigration,
} from './member-agents.js'
import {INSTALL_RECORD_NAME, NAMESPACE, PROXY_NAME, TOWER_NAME} from './names.js'
import {waitForPodsGone} from './pods-gone.js'
import {newProxySecrets} from './proxy-secrets.js'
import {
  agentPortOf,
  defaultImage,
  ksctlVersion,
  proxyServerNames,
  renderProxyObjects,
  stoppedTowerDeployment,
  switchedTowerService,
  towerPlacement,
} from './render.js'
import {selectsKsctlProxy} from '../kubesphere/agent-runtime.js'
import {applyStep, createStep, named, replaceStep, rolledBack, type Step, type Undo} from './steps.js'

export interface ProxyInstallOptions {
  /** `--image`; default: the image of an earlier install, else ksctl:<version>. */
  image?: string | undefined
  /** `--server-name`: more names for the proxy's serving certificates. */
  serverNames: string[]
  dryRun: DryRun
  /** `-o yaml|json`: the objects are the result, for GitOps; nothing is written. */
  renderOnly: boolean
  /** Asks before the first write (the command: a prompt, or `--yes`). */
  confirm: (question: string) => Promise<boolean>
  /** The user's `--timeout`, when given: the limit of the wait for Tower's pods to stop. */
  waitTimeoutMs?: number | undefined
  /** Phase "migrate members" (see MemberMigration); default: moveMembersToKsctlAgent (-o yaml: refuse). */
  migration?: MemberMigration
}

/** What `ksctl proxy install` did or would do. Part of the `--json` contract: add fields, never rename. */
export interface ProxyInstallResult {
  context: string
  edition: Edition
  image: string
  dryRun: boolean
  /** Only rendered (`-o yaml|json`): `objects` is the result. */
  rendered: boolean
  /** An earlier install's record was found: this run repaired what had drifted from it. */
  reinstall: boolean
  changes: EditOutcome[]
  /** `-o yaml|json`: the objects to apply, without the Secrets. */
  objects?: ManifestObject[]
  /** What `objects` leaves out, and why. */
  omitted?: string[]
  /** `sha256:` of the proxy's serving key, which agents may pin (`--proxy-pin`). */
  servingPin?: string
  /** Fingerprint of the proxy CA's public key. */
  proxyCaFingerprint?: string
  /** Proxy Clusters whose members were moved to ksctl's agent. */
  migrated: string[]
  notes: string[]
}

/**
 * Puts ksctl's proxy in the place of Tower's on a KubeSphere host (docs/deployment.md "Replacing Tower's proxy"),
 * in phases: read and check the host; refuse or migrate the members on Tower's agent; then, each step undone in
 * reverse if a later one fails, the record of what was there, the proxy's ServiceAccount, RBAC and Secrets, the
 * migration, Tower's Deployment scaled to 0 (and its pods gone), ksctl's Deployment, and the tower Service's
 * selector. Run again, it repairs what drifted from the record (a re-run ks-installer, a Helm upgrade).
 */
export async function installProxy(
  client: ClusterClient,
  options: ProxyInstallOptions,
): Promise<ProxyInstallResult> {
  const host = await readHostState(client)
  const migration = options.migration ?? (options.renderOnly ? refuseMigration : moveMembersToKsctlAgent)
  const existing = await existingProxyObjects(host)
  const image = options.image ?? existingImage(existing.deployment) ?? defaultImage()
  const serverNames = proxyServerNames(
    host.towerService,
    host.info.proxyAddress.effective,
    options.serverNames,
  )
  const rendered = renderProxyObjects({
    image,
    agentPort: agentPortOf(host.towerService),
    serverNames,
    placement: towerPlacement(host.towerDeployment),
  })
  const notes: string[] = []
  if (options.image === undefined && existing.deployment === undefined) {
    notes.push(
      `no --image: the proxy's Deployment names ${image}, which nodes look for on Docker Hub; load the image into ` +
        'your registry (skopeo copy oci-archive:out/ksctl-<version>.oci.tar docker://REGISTRY/ksctl:<version>) and pass --image',
    )
  }
  const base = {
    context: client.context,
    edition: host.edition,
    image,
    dryRun: options.dryRun !== false || options.renderOnly,
    reinstall: host.record !== undefined,
    migrated: [] as string[],
    notes,
  }

  // Phase "migrate members": who runs Tower's agent, checked before any write (and before printing what to apply).
  const agents = proxyClusterAgents(host.clusters, host.caPem)
  const onTowerAgent = agents.filter((agent) => agent.agent === 'tower')
  await migration.check(client, onTowerAgent)

  if (options.renderOnly) {
    return {
      ...base,
      rendered: true,
      changes: [],
      objects: [
        ...rendered,
        cleaned(switchedTowerService(host.towerService)),
        cleaned(stoppedTowerDeployment(host.towerDeployment)),
      ],
      omitted: [
        `secrets ${NAMESPACE}/ksctl-tower-ca and ${NAMESPACE}/ksctl-tower-serving: they hold private keys; ` +
          `make them by hand once (docs/deployment.md, "Replacing Tower's proxy"); ksctl proxy install --context ${client.context} run for real makes them itself`,
        `configmap ${NAMESPACE}/${INSTALL_RECORD_NAME}: ksctl proxy install's record for the undo`,
      ],
      ...(host.servingPin === undefined ? {} : {servingPin: host.servingPin}),
    }
  }

  if (host.record === undefined) refuseStrayObjects(client, existing)

  const secrets =
    host.caPem === undefined || host.servingPin === undefined ? await newProxySecrets(serverNames) : undefined
  const servingPin = host.servingPin ?? secrets?.servingPin
  const caPem = host.caPem ?? secrets?.caPem
  const record: InstallRecord = host.record?.record ?? {
    version: 1,
    installedAt: new Date().toISOString(),
    ksctlVersion: ksctlVersion(),
    replaced: [
      recordObject(host.towerDeployment),
      recordObject(host.towerService),
      ...[...host.clusterServices.values()].map(recordObject),
    ],
    created: [
      ...rendered.map(headerOf),
      ...(host.caPem === undefined && secrets !== undefined ? [headerOf(secrets.ca)] : []),
      ...(host.servingPin === undefined && secrets !== undefined ? [headerOf(secrets.serving)] : []),
    ],
  }

  const {objects} = host
  const proxySteps: Step[] = [
    ...(host.record === undefined
      ? [createStep(objects, recordConfigMap(record), 'record what Tower had, for the undo')]
      : []),
    ...rendered
      .filter((object) => object.kind !== 'Deployment')
      .map((object) =>
        applyStep(
          objects,
          object,
          existing.byName.get(named(object)),
          `apply ${object.kind} ${object.metadata.name}`,
        ),
      ),
    ...(host.caPem === undefined && secrets !== undefined
      ? [createStep(objects, secrets.ca, 'make the proxy CA, whose key stays in its Secret')]
      : []),
    ...(host.servingPin === undefined && secrets !== undefined
      ? [createStep(objects, secrets.serving, 'make the serving key, which agents may pin')]
      : []),
  ]
  const stopTower = replaceStep(
    objects,
    host.towerDeployment,
    stoppedTowerDeployment(host.towerDeployment),
    "scale Tower's proxy to 0 replicas",
  )
  const deployment = rendered.find((object) => object.kind === 'Deployment')
  if (deployment === undefined) throw new Error('internal error: no proxy Deployment rendered')
  const startProxy = applyStep(objects, deployment, existing.deployment, "run ksctl's proxy")
  const switchService = replaceStep(
    objects,
    host.towerService,
    switchedTowerService(host.towerService),
    "point the tower Service at ksctl's proxy, keeping its name, ports and address",
  )
  const steps = [...proxySteps, stopTower, startProxy, switchService]

  await requireAccess(
    steps.flatMap((step) => step.writes),
    options.dryRun,
  )
  const common = {
    ...base,
    rendered: false,
    ...(servingPin === undefined ? {} : {servingPin}),
    ...(caPem === undefined ? {} : {proxyCaFingerprint: certificateFingerprint(caPem)}),
  }
  if (options.dryRun === 'client') {
    const changes = []
    for (const step of steps) changes.push(await step.preview())
    return {...common, changes}
  }
  if (options.dryRun === false) {
    const pending = await Promise.all([stopTower.preview(), switchService.preview()])
    if (!host.record || pending.some((outcome) => outcome.changed)) {
      const question =
        `replace Tower's proxy with ksctl's on context "${client.context}" (KubeSphere ${host.edition}): ` +
        `Deployment ${TOWER_NAME} to 0 replicas, Deployment ${PROXY_NAME} (${image}), Service ${TOWER_NAME} pointed at it` +
        (onTowerAgent.length === 0
          ? ''
          : `, after moving ${String(onTowerAgent.length)} member(s) to ksctl's agent`) +
        '?'
      if (!(await options.confirm(question)))
        throw new KsctlError('not confirmed: nothing was changed', {code: 'INTERRUPTED'})
    }
  }

  const serverDryRun = options.dryRun === 'server'
  const changes: EditOutcome[] = []
  const undos: {summary: string; undo: Undo}[] = []
  // Set once the undos ran: a failure inside the switch is rolled back there and passes through the migration.
  let undone = false
  const undoAll = (error: unknown, failedStep: string): Promise<KsctlError> => {
    if (undone) return Promise.resolve(error as KsctlError)
    undone = true
    return rolledBack(error, failedStep, undos, uninstallHint(client))
  }
  const run = async (step: Step): Promise<EditOutcome> => {
    try {
      const {outcome, undo} = await step.run(serverDryRun)
      changes.push(outcome)
      if (outcome.changed && !serverDryRun) log.info(step.summary)
      if (undo !== undefined) undos.push({summary: step.summary, undo})
      return outcome
    } catch (error) {
      throw await undoAll(error, step.summary)
    }
  }
  for (const step of proxySteps) await run(step)
  const switchProxy = async (): Promise<void> => {
    const stopped = await run(stopTower)
    // Only when this run scaled Tower down: an earlier run's Tower pods are long gone.
    if (!serverDryRun && stopped.changed) {
      try {
        await waitForPodsGone(
          client,
          host.towerDeployment.spec?.selector.matchLabels ?? {},
          "Tower's proxy",
          options.waitTimeoutMs,
        )
      } catch (error) {
        throw await undoAll(error, "wait for Tower's proxy to stop")
      }
    }
    await run(startProxy)
    await run(switchService)
  }
  if (serverDryRun) await switchProxy()
  else {
    // Phase "migrate members": ksctl's agent onto each member through Tower's tunnel, then the switch, then
    // Tower's agents removed through ksctl's tunnel.
    try {
      const migrated = await migration.migrate(client, onTowerAgent, switchProxy)
      changes.push(...migrated.changes)
      base.migrated.push(...onTowerAgent.map((agent) => agent.name))
      for (const unfinished of migrated.unfinished)
        notes.push(`member not finished after the switch: ${unfinished}`)
    } catch (error) {
      throw await undoAll(error, "move members to ksctl's agent")
    }
  }

  if (!selectsKsctlProxy(host.towerService) && !serverDryRun) {
    notes.push(
      `follow the proxy: ${kubectl(client.context, `-n ${NAMESPACE} rollout status deployment/${PROXY_NAME}`)}`,
    )
  }
  if (onTowerAgent.length === 0 && agents.some((agent) => agent.agent === 'none')) {
    notes.push(
      `proxy Clusters without a connected agent (${agents
        .filter((agent) => agent.agent === 'none')
        .map((agent) => agent.name)
        .join(', ')}) need ksctl's agent on their member: ksctl member join NAME --runtime ksctl`,
    )
  }
  return {...common, changes}
}

interface ExistingProxyObjects {
  byName: Map<string, HostObject>
  deployment?: HostObject
}

async function existingProxyObjects(host: HostState): Promise<ExistingProxyObjects> {
  const placeholders = renderProxyObjects({
    image: 'unused',
    agentPort: {number: 8080, name: 'agents'},
    serverNames: [],
    placement: {},
  })
  const found = await Promise.all(placeholders.map((object) => host.objects.find(object)))
  const byName = new Map<string, HostObject>()
  placeholders.forEach((object, index) => {
    const current = found[index]
    if (current !== undefined)
      byName.set(named(object), {...current, apiVersion: object.apiVersion, kind: object.kind})
  })
  const deployment = [...byName.values()].find((object) => object.kind === 'Deployment')
  return {byName, ...(deployment === undefined ? {} : {deployment})}
}

function existingImage(deployment: HostObject | undefined): string | undefined {
  return (deployment as V1Deployment | undefined)?.spec?.template.spec?.containers[0]?.image
}

/** Objects of ksctl's proxy without an install record were made by something else: the install will not adopt them. */
function refuseStrayObjects(client: ClusterClient, existing: ExistingProxyObjects): void {
  const stray = [...existing.byName.values()]
  if (stray.length === 0) return
  const deletions = stray.map((object) =>
    kubectl(
      client.context,
      `${object.metadata.namespace === undefined ? '' : `-n ${object.metadata.namespace} `}delete ${object.kind.toLowerCase()} ${object.metadata.name}`,
    ),
  )
  throw new KsctlError(
    `${[...existing.byName.keys()].join(', ')} already exist(s) in context "${client.context}", but ksctl proxy ` +
      `install did not make them (there is no configmap ${NAMESPACE}/${INSTALL_RECORD_NAME}): nothing was changed`,
    {
      code: 'PRECONDITION_FAILED',
      context: client.context,
      object: HostObjects.ref(stray[0] as HostObject),
      suggestions: [
        'if they are left from a test or a hand-made install, delete them, then run the same command again:',
        ...deletions,
      ],
    },
  )
}

function uninstallHint(client: ClusterClient): string {
  return `what is left is in the install record; remove it with: ksctl proxy uninstall --context ${client.context}`
}

/** An object as a GitOps repository keeps it: no server-managed metadata, no status. */
function cleaned(object: HostObject): ManifestObject {
  const copy: HostObject & {status?: unknown} = structuredClone(object)
  delete copy.status
  const volatile = new Set(['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields'])
  return {
    ...copy,
    metadata: Object.fromEntries(
      Object.entries(copy.metadata).filter(([key]) => !volatile.has(key)),
    ) as ManifestObject['metadata'],
  }
}

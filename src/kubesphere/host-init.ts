import {formatDuration} from '../cli/duration.js'
import {KsctlError} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {editWrites, requireAccess} from '../k8s/access-review.js'
import {runEdit, type DryRun} from '../k8s/dry-run.js'
import {kubectl} from '../k8s/kubectl.js'
import {previewEdit, type EditOutcome} from '../k8s/object-edit.js'
import {ClusterConfigurationResource, ClusterResource, type CustomObject} from '../k8s/resources.js'
import {
  DEFAULT_HOST_CLUSTER_NAME,
  HOST_CLUSTER_LABEL,
  INSTALLER_CONFIGURATION_NAME,
  KUBESPHERE_NAMESPACE,
  TOWER_SERVICE_NAME,
} from './constants.js'
import {detectKubeSphere, requireComplete, type Edition, type KubeSphereInfo} from './detect.js'
import {installerSpecEdit, setIn} from './edits.js'
import {validateHostClusterName} from './names.js'
import {waitUntil} from './wait.js'

export interface HostInitOptions {
  name?: string | undefined
  force: boolean
  dryRun: DryRun
  wait: boolean
  /** The user's `--timeout`, when given: the limit of the wait for the installer instead of its default. */
  waitTimeoutMs?: number | undefined
}

/** What `ksctl host init` did or would do. Part of the `--json` contract. */
export interface HostInitResult {
  context: string
  edition: Edition
  hostClusterName: string
  /** The cluster was already a host with this name: nothing changed. */
  alreadyHost: boolean
  dryRun: boolean
  changes: EditOutcome[]
  /** 3.x: the installer's `status.multicluster.status` at the end (after `--wait`, `enabled`). */
  multiclusterStatus?: string
}

/**
 * How long ks-installer may take to enable multicluster without `--timeout`: it runs its whole playbook again
 * (every component's role) and then installs the tower proxy, which takes minutes, more with image pulls.
 */
export const INSTALLER_WAIT_MS = 20 * 60_000

export const INSTALLER_LOGS_COMMAND =
  "kubectl logs -n kubesphere-system -l 'app in (ks-install, ks-installer)' -f"

/** Makes the cluster behind `client` a KubeSphere host, or checks that it is one (4.x). */
export async function hostInit(client: ClusterClient, options: HostInitOptions): Promise<HostInitResult> {
  const name = options.name === undefined ? undefined : validateHostClusterName(options.name)
  const info = await detectKubeSphere(client)
  requireComplete(info)
  if (!info.installed || info.edition === undefined) {
    throw new KsctlError(`KubeSphere is not installed in context "${client.context}"`, {
      code: 'PRECONDITION_FAILED',
      context: client.context,
      suggestions: [
        'install KubeSphere 3.4 (ks-installer) or 4.1 (ks-core) first',
        `check with: ksctl info --context ${client.context}`,
      ],
    })
  }
  if (info.role === 'member') {
    const host = info.managedByHost ?? 'its host'
    throw new KsctlError(
      `context "${client.context}" is a member cluster${info.memberClusterName === undefined ? '' : ` ("${info.memberClusterName}")`}; ` +
        'a member cannot become a host',
      {
        code: 'PRECONDITION_FAILED',
        context: client.context,
        suggestions: [
          `remove it from ${host} first: ksctl member leave NAME --host-context H --member-context ${client.context}`,
        ],
      },
    )
  }
  return info.edition === '3.x'
    ? initInstallerHost(client, info, name, options)
    : checkCoreHost(client, info, name)
}

async function initInstallerHost(
  client: ClusterClient,
  info: KubeSphereInfo,
  name: string | undefined,
  options: HostInitOptions,
): Promise<HostInitResult> {
  const currentName = info.hostClusterName ?? DEFAULT_HOST_CLUSTER_NAME
  if (info.role === 'host' && name !== undefined && name !== currentName && !options.force) {
    const members = await memberClusterNames(client)
    throw new KsctlError(
      `context "${client.context}" is already the host "${currentName}"; renaming it to "${name}" is refused` +
        (members.length > 0
          ? ` (it manages ${members.length} member cluster(s): ${members.join(', ')})`
          : ''),
      {
        code: 'PRECONDITION_FAILED',
        context: client.context,
        object: {
          resource: 'clusterconfigurations.installer.kubesphere.io',
          name: INSTALLER_CONFIGURATION_NAME,
          namespace: KUBESPHERE_NAMESPACE,
        },
        suggestions: [
          `KubeSphere does not rename the host's Cluster object "${currentName}", and members know the host by that name: keep it`,
          'pass --force to rename anyway',
        ],
      },
    )
  }
  const targetName = name ?? currentName
  const edit = installerSpecEdit(
    client,
    `set spec.multicluster.clusterRole to host${name === undefined ? '' : ` and hostClusterName to ${name}`}`,
    (spec) => {
      setIn(spec, ['multicluster', 'clusterRole'], 'host')
      if (name !== undefined) setIn(spec, ['multicluster', 'hostClusterName'], name)
    },
  )
  const preview = await previewEdit(edit)
  await requireAccess(editWrites(client, preview), options.dryRun)
  const change = options.dryRun === 'client' ? preview : await runEdit(edit, options.dryRun)
  const result: HostInitResult = {
    context: client.context,
    edition: '3.x',
    hostClusterName: targetName,
    alreadyHost: !change.changed,
    dryRun: options.dryRun !== false,
    changes: [change],
    ...(info.multiclusterStatus === undefined ? {} : {multiclusterStatus: info.multiclusterStatus}),
  }
  if (options.wait && !options.dryRun) {
    result.multiclusterStatus = await waitForMulticluster(client, options.waitTimeoutMs)
  }
  return result
}

/** 4.x: ks-core makes every cluster a host by default and Helm owns its objects: check, never edit. */
async function checkCoreHost(
  client: ClusterClient,
  info: KubeSphereInfo,
  name: string | undefined,
): Promise<HostInitResult> {
  const hostName = info.hostClusterName ?? DEFAULT_HOST_CLUSTER_NAME
  const problems: string[] = []
  const fixes: string[] = []
  if (name !== undefined && name !== hostName) {
    problems.push(`its host cluster name is "${hostName}", not "${name}"`)
    fixes.push(
      `the name is the ks-core Helm value multicluster.hostClusterName: helm upgrade ks-core ... --set multicluster.hostClusterName=${name}`,
    )
  }
  const hostCluster = await client.findCustomObject<CustomObject>(ClusterResource, hostName)
  if (hostCluster === undefined) {
    problems.push(`the host Cluster object "${hostName}" does not exist yet`)
    fixes.push(
      `ks-controller-manager creates it on its next resync; check its logs: ${kubectl(client.context, '-n kubesphere-system logs deploy/ks-controller-manager')}`,
    )
  }
  if (
    !info.tower.exists ||
    (await client.findDeployment(KUBESPHERE_NAMESPACE, TOWER_SERVICE_NAME)) === undefined
  ) {
    problems.push('the tower extension (KubeSphere Multi-Cluster Agent Connection) is not installed')
    fixes.push(
      'install and enable "KubeSphere Multi-Cluster Agent Connection" (tower) in the Extensions Center',
    )
  }
  if (problems.length > 0) {
    throw new KsctlError(
      `context "${client.context}" (KubeSphere ${info.version ?? '4.x'}) is not ready as a host: ${problems.join('; ')}`,
      {
        code: 'PRECONDITION_FAILED',
        context: client.context,
        suggestions: fixes,
      },
    )
  }
  return {
    context: client.context,
    edition: '4.x',
    hostClusterName: hostName,
    alreadyHost: true,
    dryRun: false,
    changes: [],
  }
}

async function memberClusterNames(client: ClusterClient): Promise<string[]> {
  const clusters = await client.listCustomObjects<CustomObject>(ClusterResource).catch(() => [])
  return clusters
    .filter((cluster) => cluster.metadata?.labels?.[HOST_CLUSTER_LABEL] === undefined)
    .map((cluster) => cluster.metadata?.name ?? '')
}

async function waitForMulticluster(client: ClusterClient, timeoutMs: number | undefined): Promise<string> {
  let status = ''
  await waitUntil({
    what: 'ks-installer to enable multicluster',
    defaultTimeoutMs: INSTALLER_WAIT_MS,
    timeoutMs,
    poll: async () => {
      const installer = await client.findCustomObject<
        CustomObject & {status?: {multicluster?: {status?: string}}}
      >(ClusterConfigurationResource, INSTALLER_CONFIGURATION_NAME, KUBESPHERE_NAMESPACE)
      status = installer?.status?.multicluster?.status ?? ''
      return {
        done: status === 'enabled',
        state:
          status === ''
            ? 'waiting for ks-installer to install the multicluster component'
            : `multicluster: ${status}`,
      }
    },
    onTimeout: (_last, limitMs) =>
      new KsctlError(
        `ks-installer did not enable multicluster within ${formatDuration(limitMs)} in context "${client.context}"`,
        {
          code: 'TIMEOUT',
          context: client.context,
          suggestions: [
            `follow the installer: ${INSTALLER_LOGS_COMMAND.replace('kubectl', `kubectl --context ${client.context}`)}`,
            'then run the same command again',
          ],
        },
      ),
  })
  return status
}

import {invalidInput, KsctlError, usageError, type ObjectRef} from '../errors.js'
import {editWrites, requireAccess} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {runEdit, type DryRun} from '../k8s/dry-run.js'
import {previewEdit, type EditOutcome, type ObjectEdit} from '../k8s/object-edit.js'
import {
  CLUSTER_CONNECTION_SECRET_TYPE,
  KUBESPHERE_NAMESPACE,
  TOWER_CONNECTION_SECRET_NAME,
} from './constants.js'
import {detectKubeSphere, requireComplete, type Edition, type KubeSphereInfo} from './detect.js'
import {installerSpecEdit, kubesphereConfigEdit, setIn, towerConnectionSecretEdit} from './edits.js'

export interface AddressChoice {
  name: string
  value: string
}

export interface SetProxyAddressOptions {
  address?: string | undefined
  agentImage?: string | undefined
  restart: boolean
  dryRun: DryRun
  /** Asks the user to pick an address (on a terminal) or fails naming ADDRESS; injected by the command. */
  choose: (choices: AddressChoice[], example: string) => Promise<string>
  now?: Date
}

/** What `ksctl proxy set-address` did or would do. Part of the `--json` contract. */
export interface SetProxyAddressResult {
  context: string
  edition: Edition
  address: string
  /** `argument` (given), `chosen` (picked at the prompt), `load-balancer` (detected, nothing to set). */
  source: 'argument' | 'chosen' | 'load-balancer'
  dryRun: boolean
  changes: EditOutcome[]
  /** Deployments restarted (or, on a dry run, that would be) so that they read the new address. */
  restarted: string[]
  warnings: string[]
  notes: string[]
}

/** `http(s)://host:port`, nothing else: what members' agents are told to dial. */
export function parseProxyAddress(text: string, flag = 'ADDRESS'): URL {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw invalidInput(`${flag} "${text}" is not a URL`, [
      `use http(s)://host:port, e.g. http://203.0.113.10:30721`,
    ])
  }
  // The URL drops a default port (https://host:443 has port ''), so an explicit one is read from the text.
  const explicitPort = url.port !== '' || /:\d{1,5}\/?$/.test(text)
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !explicitPort || url.hostname === '') {
    throw invalidInput(`${flag} "${text}" must be http(s)://host:port with an explicit port`, [
      'e.g. http://203.0.113.10:30721 (a node address and the tower NodePort) or http://lb.example.com:8080',
    ])
  }
  if (
    (url.pathname !== '/' && url.pathname !== '') ||
    url.search !== '' ||
    url.hash !== '' ||
    url.username !== ''
  ) {
    throw invalidInput(`${flag} "${text}" must not have a path, query or credentials`, [
      `use ${url.protocol}//${url.host}`,
    ])
  }
  return url
}

/** Sets (or detects) the address the tower proxy is published at, where the installed KubeSphere reads it. */
export async function setProxyAddress(
  client: ClusterClient,
  options: SetProxyAddressOptions,
): Promise<SetProxyAddressResult> {
  const given = options.address === undefined ? undefined : parseProxyAddress(options.address).origin
  const info = await detectKubeSphere(client)
  requireComplete(info)
  const edition = requireHost(client, info)
  if (options.agentImage !== undefined && edition === '3.x') {
    throw usageError(
      '--agent-image cannot be set on KubeSphere 3.x: ks-installer takes the agent image from its own defaults',
      [
        'give the image when rendering the agent instead: ksctl member join ... --agent-image IMAGE, or ksctl agent render ... --image IMAGE',
      ],
    )
  }
  const tower = info.tower
  const warnings: string[] = []
  let address = given
  let source: SetProxyAddressResult['source'] = 'argument'
  if (address === undefined && tower.loadBalancerAddress !== undefined) {
    return {
      context: client.context,
      edition,
      address: info.proxyAddress.effective ?? tower.loadBalancerAddress,
      source: 'load-balancer',
      dryRun: options.dryRun !== false,
      changes: [],
      restarted: [],
      warnings,
      notes: [
        info.proxyAddress.source === 'configured'
          ? `the tower LoadBalancer has address ${tower.loadBalancerAddress}, but proxyPublishAddress ${info.proxyAddress.effective ?? ''} is configured and takes precedence`
          : `detected from the tower LoadBalancer: ${tower.loadBalancerAddress}; nothing needs setting`,
      ],
    }
  }
  if (address === undefined) {
    const choices = await nodeAddressChoices(client, tower.nodePort)
    const example = `ksctl proxy set-address http://<node-address>:${tower.nodePort ?? tower.port ?? '<port>'} --context ${client.context}`
    address = parseProxyAddress(await options.choose(choices, example)).origin
    source = 'chosen'
  }
  const port = Number(new URL(address).port)
  if (port !== tower.port && port !== tower.nodePort) {
    warnings.push(
      `port ${port} is neither the tower Service port (${tower.port ?? 'none'}) nor its NodePort (${tower.nodePort ?? 'none'}): ` +
        'make sure something forwards it to the tower proxy',
    )
  }
  const edits = await addressEdits(client, edition, address, options.agentImage)
  const previews: EditOutcome[] = []
  for (const edit of edits) previews.push(await previewEdit(edit))
  const changed = previews.some((change) => change.changed)
  const needRestart = changed ? deploymentsToRestart(info) : []
  const restartTargets = options.restart ? needRestart : []
  await requireAccess(
    [
      ...previews.flatMap((preview) => editWrites(client, preview)),
      ...restartTargets.map((name) => ({client, verb: 'patch' as const, object: deploymentRef(name)})),
    ],
    options.dryRun,
  )
  const changes: EditOutcome[] = options.dryRun === 'client' ? previews : []
  if (options.dryRun !== 'client') {
    for (const edit of edits) changes.push(await runEdit(edit, options.dryRun))
    for (const name of restartTargets)
      await client.restartDeployment(
        KUBESPHERE_NAMESPACE,
        name,
        options.now ?? new Date(),
        options.dryRun === 'server',
      )
  }
  return {
    context: client.context,
    edition,
    address,
    source,
    dryRun: options.dryRun !== false,
    changes,
    restarted: restartTargets,
    warnings,
    notes: notesFor(edition, options.restart ? [] : needRestart),
  }
}

function requireHost(client: ClusterClient, info: KubeSphereInfo): Edition {
  if (!info.installed || info.edition === undefined) {
    throw new KsctlError(`KubeSphere is not installed in context "${client.context}"`, {
      code: 'PRECONDITION_FAILED',
      context: client.context,
      suggestions: [`check with: ksctl info --context ${client.context}`],
    })
  }
  if (info.role !== 'host') {
    throw new KsctlError(
      `context "${client.context}" is not a KubeSphere host (role: ${info.role}); the proxy runs on the host`,
      {
        code: 'PRECONDITION_FAILED',
        context: client.context,
        suggestions:
          info.role === 'none'
            ? [`make it the host first: ksctl host init --context ${client.context} --wait`]
            : [],
      },
    )
  }
  if (!info.tower.exists) {
    throw new KsctlError(
      `service ${KUBESPHERE_NAMESPACE}/tower not found in context "${client.context}": the tower proxy is not installed`,
      {
        code: 'PRECONDITION_FAILED',
        context: client.context,
        object: {resource: 'services', name: 'tower', namespace: KUBESPHERE_NAMESPACE},
        suggestions:
          info.edition === '3.x'
            ? [`wait for ks-installer to install it: ksctl host init --context ${client.context} --wait`]
            : [
                'install and enable "KubeSphere Multi-Cluster Agent Connection" (tower) in the Extensions Center',
              ],
      },
    )
  }
  return info.edition
}

async function addressEdits(
  client: ClusterClient,
  edition: Edition,
  address: string,
  agentImage: string | undefined,
): Promise<ObjectEdit<object>[]> {
  const what = `set proxyPublishAddress to ${address}${agentImage === undefined ? '' : ` and agentImage to ${agentImage}`}`
  if (edition === '3.x') {
    return [
      installerSpecEdit(client, what, (spec) =>
        setIn(spec, ['multicluster', 'proxyPublishAddress'], address),
      ),
    ]
  }
  const edits: ObjectEdit<object>[] = [
    kubesphereConfigEdit(client, what, (config) => {
      const multicluster = (config.multicluster ??= {})
      multicluster.proxyPublishAddress = address
      if (agentImage !== undefined) multicluster.agentImage = agentImage
    }),
  ]
  const secret = await client.findSecret(KUBESPHERE_NAMESPACE, TOWER_CONNECTION_SECRET_NAME)
  if (secret?.type === CLUSTER_CONNECTION_SECRET_TYPE) {
    edits.push(
      towerConnectionSecretEdit(client, what, (settings) => {
        settings.proxyPublishAddress = address
        if (agentImage !== undefined) settings.agentImage = agentImage
      }),
    )
  }
  return edits
}

/** A Deployment `kubectl rollout restart` patches, as the access review names it. */
function deploymentRef(name: string): ObjectRef {
  return {resource: 'deployments', group: 'apps', name, namespace: KUBESPHERE_NAMESPACE}
}

/** 3.0–3.2 and 4.x ks-apiserver read their configuration once; 3.3+ watches the file. */
function deploymentsToRestart(info: KubeSphereInfo): string[] {
  if (info.edition === '4.x') return ['ks-apiserver']
  const minor = /^v?3\.(\d+)/.exec(info.version ?? '')?.[1]
  return minor !== undefined && Number(minor) <= 2 ? ['ks-apiserver'] : []
}

function notesFor(edition: Edition, notRestarted: string[]): string[] {
  const notes =
    edition === '3.x'
      ? [
          'set in the ks-installer ClusterConfiguration: the installer re-renders kubesphere-config from it ' +
            '(an edit of the ConfigMap alone would be lost on its next run); members get the address once it has run',
        ]
      : [
          'kubesphere-config is rendered by the ks-core Helm chart: run this command again after every helm upgrade of ks-core',
        ]
  for (const name of notRestarted) {
    notes.push(
      `not restarted (--no-restart): run kubectl -n ${KUBESPHERE_NAMESPACE} rollout restart deployment ${name} for it to read the address`,
    )
  }
  return notes
}

/** The nodes' external (then internal) addresses with the tower NodePort, for the user to pick from. */
async function nodeAddressChoices(
  client: ClusterClient,
  nodePort: number | undefined,
): Promise<AddressChoice[]> {
  if (nodePort === undefined) return []
  const nodes = await client.listNodes().catch(() => [])
  const choices: AddressChoice[] = []
  for (const type of ['ExternalIP', 'InternalIP']) {
    for (const node of nodes) {
      for (const address of node.status?.addresses ?? []) {
        if (address.type !== type) continue
        const host = address.address.includes(':') ? `[${address.address}]` : address.address
        choices.push({
          name: `${node.metadata?.name ?? '?'} ${type} ${address.address}`,
          value: `http://${host}:${nodePort}`,
        })
      }
    }
  }
  return choices
}

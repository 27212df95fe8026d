import {BlockList, isIPv4} from 'node:net'

import type {V1Node} from '@kubernetes/client-node'

import {invalidInput, KsctlError, usageError, type ObjectRef} from '../errors.js'
import {editWrites, requireAccess} from '../k8s/access-review.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {runEdit, type DryRun} from '../k8s/dry-run.js'
import {kubectl} from '../k8s/kubectl.js'
import {previewEdit, type EditOutcome, type ObjectEdit} from '../k8s/object-edit.js'
import {
  CLUSTER_CONNECTION_SECRET_TYPE,
  KUBESPHERE_NAMESPACE,
  TOWER_CONNECTION_SECRET_NAME,
} from './constants.js'
import {detectKubeSphere, requireComplete, type Edition, type KubeSphereInfo} from './detect.js'
import {
  installerSpecEdit,
  kubesphereConfigEdit,
  setIn,
  towerConnectionSecretEdit,
  type YamlSetting,
} from './edits.js'

export interface AddressChoice {
  name: string
  value: string
}

/** The addresses to offer for ADDRESS, why there are none when there are none, and a command line to copy. */
export interface AddressOffer {
  choices: AddressChoice[]
  whyNone: string
  example: string
}

export interface SetProxyAddressOptions {
  address?: string | undefined
  agentImage?: string | undefined
  restart: boolean
  dryRun: DryRun
  /** Asks the user to pick an address (on a terminal) or fails naming ADDRESS; injected by the command. */
  choose: (offer: AddressOffer) => Promise<string>
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
  // Read from the text: the URL parser rejects a port above 65535 as "not a URL", and drops a default port.
  const port = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(?:\[[^\]]*\]|[^/?#:]*):(\d+)(?:[/?#]|$)/i.exec(
    text,
  )?.[1]
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
    throw invalidInput(`${flag} "${text}" has port ${port}, which is out of range (1-65535)`, [
      'e.g. http://203.0.113.10:30721 (a node address and the tower NodePort)',
    ])
  }
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw invalidInput(`${flag} "${text}" is not a URL`, [
      `use http(s)://host:port, e.g. http://203.0.113.10:30721`,
    ])
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || port === undefined || url.hostname === '') {
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

/** Addresses that lead back to the machine that dials them: 127.0.0.0/8, ::1, localhost, and "this host". */
const selfAddresses = new BlockList()
selfAddresses.addSubnet('127.0.0.0', 8, 'ipv4')
selfAddresses.addSubnet('0.0.0.0', 8, 'ipv4')
selfAddresses.addAddress('::1', 'ipv6')
selfAddresses.addAddress('::', 'ipv6')
selfAddresses.addSubnet('::ffff:127.0.0.0', 104, 'ipv6')

/** Whether an agent dialing `address` would reach its own node instead of the proxy. */
export function isLoopbackAddress(address: string): boolean {
  const host = new URL(address).hostname.replace(/^\[|\]$/g, '')
  if (host === 'localhost' || host.endsWith('.localhost')) return true
  if (host.includes(':')) return selfAddresses.check(host, 'ipv6')
  return isIPv4(host) && selfAddresses.check(host, 'ipv4')
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
    const offer = await nodeAddressOffer(client, tower.nodePort)
    address = parseProxyAddress(
      await options.choose({
        ...offer,
        example: `ksctl proxy set-address http://<node-address>:${tower.nodePort ?? tower.port ?? '<port>'} --context ${client.context}`,
      }),
    ).origin
    source = 'chosen'
  }
  if (isLoopbackAddress(address)) {
    warnings.push(
      `${address} is a loopback address: an agent dialing it reaches its own node, not the proxy, so members cannot connect; ` +
        'give an address every member node can reach',
    )
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
    notes: notesFor(client.context, edition, options.restart ? [] : needRestart),
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
  const settings = (prefix: string[]): YamlSetting[] => [
    {path: [...prefix, 'proxyPublishAddress'], value: address},
    ...(agentImage === undefined ? [] : [{path: [...prefix, 'agentImage'], value: agentImage}]),
  ]
  const edits: ObjectEdit<object>[] = [kubesphereConfigEdit(client, what, settings(['multicluster']))]
  const secret = await client.findSecret(KUBESPHERE_NAMESPACE, TOWER_CONNECTION_SECRET_NAME)
  if (secret?.type === CLUSTER_CONNECTION_SECRET_TYPE) {
    edits.push(towerConnectionSecretEdit(client, what, settings([])))
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

function notesFor(context: string, edition: Edition, notRestarted: string[]): string[] {
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
      `not restarted (--no-restart): run ${kubectl(context, `-n ${KUBESPHERE_NAMESPACE} rollout restart deployment ${name}`)} for it to read the address`,
    )
  }
  return notes
}

/** The nodes' external (then internal) addresses with the tower NodePort, for the user to pick from. */
async function nodeAddressOffer(
  client: ClusterClient,
  nodePort: number | undefined,
): Promise<Omit<AddressOffer, 'example'>> {
  if (nodePort === undefined) {
    return {
      choices: [],
      whyNone: 'the tower Service has no NodePort, so there are no node addresses to offer',
    }
  }
  let nodes: V1Node[]
  try {
    nodes = await client.listNodes()
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    return {choices: [], whyNone: `the node addresses to offer could not be listed: ${reason}`}
  }
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
  const whyNone =
    nodes.length === 0
      ? `context "${client.context}" has no Node objects to offer addresses from`
      : `no Node of context "${client.context}" has an ExternalIP or InternalIP address to offer`
  return {choices, whyNone}
}

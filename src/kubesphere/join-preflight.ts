import {preconditionFailed} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {ClusterResource} from '../k8s/resources.js'
import {allInOrder} from '../promises.js'
import {kubeSystemUid} from './cluster-identity.js'
import {type KubeSphereCluster, memberUidOf} from './cluster-object.js'
import {parseKubeSphereConfig} from './config.js'
import {KUBESPHERE_CONFIG_KEY, KUBESPHERE_CONFIG_NAME, KUBESPHERE_NAMESPACE} from './constants.js'
import {detectKubeSphere, requireComplete, type Edition, type KubeSphereInfo} from './detect.js'
import {parseProxyAddress} from './proxy-address.js'

export interface JoinSide {
  client: ClusterClient
  info: KubeSphereInfo
  /** kube-system namespace UID (see kubeSystemUid). */
  uid: string
}

/** Everything `member join` established before changing anything. */
export interface JoinPreflight {
  name: string
  edition: Edition
  host: JoinSide & {jwtSecret: string}
  member: JoinSide
  proxyAddress: string
  /** The host's Cluster object of this member, when an earlier run created it. */
  existing: KubeSphereCluster | undefined
}

/**
 * The checks `member join` makes before any change, each failure a clear error: both clusters reachable
 * and distinct, the host a host with a proxy address, the member neither a host nor joined elsewhere,
 * and the name free (or already this member's, when the command is run again).
 */
export async function joinPreflight(
  hostClient: ClusterClient,
  memberClient: ClusterClient,
  name: string,
  proxyAddressOverride: string | undefined,
): Promise<JoinPreflight> {
  const [hostInfo, memberInfo, hostUid, memberUid] = await allInOrder([
    detectKubeSphere(hostClient),
    detectKubeSphere(memberClient),
    kubeSystemUid(hostClient),
    kubeSystemUid(memberClient),
  ] as const)
  if (hostUid === memberUid) {
    throw preconditionFailed(
      `--host-context "${hostClient.context}" and --member-context "${memberClient.context}" are the same cluster ` +
        `(kube-system UID ${hostUid})`,
      hostClient.context,
      ["a cluster cannot join itself: pass the member cluster's context as --member-context"],
    )
  }
  requireComplete(hostInfo)
  requireComplete(memberInfo)
  const edition = requireHost(hostClient, hostInfo)
  const proxyAddress = resolveProxyAddress(hostClient, hostInfo, proxyAddressOverride)
  requireJoinableMember(memberClient, memberInfo, edition, hostInfo, name)
  const existing = await checkRegistration(hostClient, memberClient, name, memberUid)
  return {
    name,
    edition,
    host: {
      client: hostClient,
      info: hostInfo,
      uid: hostUid,
      jwtSecret: await readJwtSecret(hostClient, edition),
    },
    member: {client: memberClient, info: memberInfo, uid: memberUid},
    proxyAddress,
    existing,
  }
}

/**
 * The host's Clusters leave `name` to this member: free, or already this member's (a re-run), and no other
 * Cluster stands for the member (by kube-system UID). Returns this member's Cluster, if there is one.
 * Checked in preflight, and again once the join holds its lock (see join-lock.ts).
 */
export async function checkRegistration(
  hostClient: ClusterClient,
  memberClient: ClusterClient,
  name: string,
  memberUid: string,
): Promise<KubeSphereCluster | undefined> {
  const clusters = await hostClient.listCustomObjects<KubeSphereCluster>(ClusterResource)
  const existing = clusters.find((cluster) => cluster.metadata?.name === name)
  if (existing !== undefined && memberUidOf(existing) !== memberUid) {
    throw preconditionFailed(
      `cluster name "${name}" is already taken on the host by another cluster`,
      hostClient.context,
      [
        `choose another name, or look at it: kubectl --context ${hostClient.context} get cluster ${name} -o yaml`,
      ],
    )
  }
  const sameMember = clusters.find(
    (cluster) => cluster.metadata?.name !== name && memberUidOf(cluster) === memberUid,
  )
  if (sameMember !== undefined) {
    throw preconditionFailed(
      `the member of context "${memberClient.context}" is already joined to this host as "${sameMember.metadata?.name ?? '?'}"`,
      memberClient.context,
      [
        'KubeSphere must not import the same cluster twice; use that name, or remove it first with ksctl member leave',
      ],
    )
  }
  return existing
}

export function requireHost(client: ClusterClient, info: KubeSphereInfo): Edition {
  if (!info.installed || info.edition === undefined || info.role !== 'host') {
    throw preconditionFailed(
      `context "${client.context}" is not a KubeSphere host (${info.installed ? `role: ${info.role}` : 'KubeSphere not installed'})`,
      client.context,
      [`make it the host first: ksctl host init --context ${client.context} --wait`],
    )
  }
  return info.edition
}

export function resolveProxyAddress(
  client: ClusterClient,
  info: KubeSphereInfo,
  override: string | undefined,
): string {
  if (override !== undefined) return parseProxyAddress(override, '--proxy-address').origin
  const address = info.proxyAddress.effective
  if (address === undefined) {
    throw preconditionFailed(
      `the host of context "${client.context}" has no proxy address: the tower Service has no LoadBalancer address ` +
        'and no proxyPublishAddress is set, so agents would not know where to connect',
      client.context,
      [
        `set it: ksctl proxy set-address http://<address>:<port> --context ${client.context}`,
        'or pass --proxy-address',
      ],
    )
  }
  return address
}

/** The member can join a host of `hostEdition` as `name`: not a host, the right edition, not joined elsewhere. */
export function requireJoinableMember(
  client: ClusterClient,
  info: KubeSphereInfo,
  hostEdition: Edition,
  hostInfo: Pick<KubeSphereInfo, 'hostClusterName'>,
  name: string,
): void {
  if (info.role === 'host') {
    throw preconditionFailed(
      `context "${client.context}" is a KubeSphere host; a host cannot join another host as a member`,
      client.context,
      ["pass the member cluster's context as --member-context"],
    )
  }
  if (hostEdition === '3.x' && info.edition !== '3.x') {
    throw preconditionFailed(
      `the member of context "${client.context}" has ${info.installed ? `KubeSphere ${info.version ?? info.edition ?? ''}` : 'no KubeSphere'}; ` +
        'a KubeSphere 3.x host can only manage members that run KubeSphere 3.x',
      client.context,
      ['install KubeSphere 3.x (ks-installer) on the member first, with the same version as the host'],
    )
  }
  if (hostEdition === '4.x' && info.edition === '3.x') {
    throw preconditionFailed(
      `the member of context "${client.context}" runs KubeSphere 3.x; a 4.x host cannot manage it`,
      client.context,
      ['upgrade the member to 4.x first (ks-upgrade), or join it to a 3.x host'],
    )
  }
  if (info.memberClusterName !== undefined && info.memberClusterName !== name) {
    throw preconditionFailed(
      `the member of context "${client.context}" is already joined as "${info.memberClusterName}"` +
        (info.managedByHost === undefined ? '' : ` to host "${info.managedByHost}"`),
      client.context,
      [
        `a cluster keeps its name across hosts: join it as "${info.memberClusterName}", or leave the other host first`,
      ],
    )
  }
  if (info.managedByHost !== undefined && info.managedByHost !== hostInfo.hostClusterName) {
    throw preconditionFailed(
      `the member of context "${client.context}" is managed by another host "${info.managedByHost}"`,
      client.context,
      [
        'leave that host first: ksctl member leave NAME --host-context <that host> --member-context ' +
          client.context,
      ],
    )
  }
}

/** The host's jwtSecret (3.x `authentication.jwtSecret`, 4.x `authentication.issuer.jwtSecret`). */
export async function readJwtSecret(client: ClusterClient, edition: Edition): Promise<string> {
  const configMap = await client.findConfigMap(KUBESPHERE_NAMESPACE, KUBESPHERE_CONFIG_NAME)
  const config = parseKubeSphereConfig(configMap?.data?.[KUBESPHERE_CONFIG_KEY], client.context)
  const secret =
    edition === '3.x' ? config.authentication?.jwtSecret : config.authentication?.issuer?.jwtSecret
  if (typeof secret !== 'string' || secret === '') {
    throw preconditionFailed(
      `configmap ${KUBESPHERE_NAMESPACE}/${KUBESPHERE_CONFIG_NAME} in context "${client.context}" has no jwtSecret`,
      client.context,
      ['KubeSphere has not finished installing: check ks-installer (3.x) or the ks-core release (4.x)'],
    )
  }
  return secret
}

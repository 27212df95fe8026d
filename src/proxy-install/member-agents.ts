import {load} from 'js-yaml'

import {KsctlError} from '../errors.js'
import {log} from '../log.js'
import {
  migrateMembersToKsctlAgent,
  notSwitchedError,
  unmovedMembers,
} from '../kubesphere/runtime-migration.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import type {EditOutcome} from '../k8s/object-edit.js'
import type {KubeSphereCluster} from '../kubesphere/cluster-object.js'
import {issuedBy} from '../pki/certificates.js'
import {isProxyCluster} from '../tower/proxy/kubernetes/cluster-reconcile.js'

/** Whose agent a proxy Cluster has, as the host sees it. */
export type AgentRuntime = 'tower' | 'ksctl' | 'none'

export interface ProxyClusterAgent {
  name: string
  agent: AgentRuntime
  /** Why it is taken for that runtime, in the user's words. */
  because: string
}

/**
 * Whose agent each proxy Cluster has, from the kubeconfig in it: every proxy issues one at its agent's connection
 * (Tower at each one, `Update` in TOWER pkg/proxy/proxy.go; ksctl's proxy at the first, and again when due), so a
 * kubeconfig whose client certificate ksctl's CA did not issue came from Tower, and a Cluster without one has never
 * had an agent connected. A kubeconfig that cannot be read is taken for Tower's: the safe side, since it stops the
 * install rather than cutting a member off. Without `ksctlCaPem` (no ksctl CA yet) every kubeconfig is Tower's.
 */
export function proxyClusterAgents(
  clusters: KubeSphereCluster[],
  ksctlCaPem: string | undefined,
): ProxyClusterAgent[] {
  return clusters
    .filter(isProxyCluster)
    .map((cluster): ProxyClusterAgent => {
      const name = cluster.metadata?.name ?? ''
      const kubeconfig = cluster.spec?.connection?.kubeconfig ?? ''
      if (kubeconfig === '')
        return {name, agent: 'none', because: 'no agent has connected yet (no kubeconfig)'}
      const certificate = clientCertificate(kubeconfig)
      if (certificate === undefined)
        return {name, agent: 'tower', because: 'its kubeconfig has no client certificate ksctl can read'}
      if (ksctlCaPem !== undefined && issuedByOrFalse(certificate, ksctlCaPem))
        return {name, agent: 'ksctl', because: "its kubeconfig was issued by ksctl's proxy CA"}
      return {name, agent: 'tower', because: "its kubeconfig was issued by another CA than ksctl's (Tower's)"}
    })
    .sort((a, b) => a.name.localeCompare(b.name))
}

function clientCertificate(base64: string): string | undefined {
  try {
    const document = load(Buffer.from(base64, 'base64').toString('utf8')) as {
      users?: {user?: {'client-certificate-data'?: unknown}}[]
    }
    const data = document.users?.[0]?.user?.['client-certificate-data']
    return typeof data === 'string' ? Buffer.from(data, 'base64').toString('utf8') : undefined
  } catch {
    return undefined
  }
}

function issuedByOrFalse(certificatePem: string, caPem: string): boolean {
  try {
    return issuedBy(certificatePem, caPem)
  } catch {
    return false
  }
}

/**
 * Phase "migrate members" of `ksctl proxy install`: the members whose agent is Tower's get ksctl's agent, applied
 * through the tunnel that still works (Tower's, with the Cluster's kubeconfig), beside Tower's; then `switchProxy`
 * (the install's last steps: Tower's proxy stopped, ksctl's started, the tower Service pointed at it); then Tower's
 * agents are removed through ksctl's tunnel. `check` runs before any write and throws (nothing changed) for members
 * that cannot be migrated. `migrate` throws, having called no `switchProxy` and put every member back, when a
 * member could not be given ksctl's agent; members that fail after the switch are returned by name.
 */
export interface MemberMigration {
  check(host: ClusterClient, members: ProxyClusterAgent[]): Promise<void>
  migrate(
    host: ClusterClient,
    members: ProxyClusterAgent[],
    switchProxy: () => Promise<void>,
  ): Promise<{changes: EditOutcome[]; unfinished: string[]}>
}

/**
 * The migration `ksctl proxy install` runs: src/kubesphere/runtime-migration.ts, with the install's switch. A dry
 * run never gets here (the install previews its own steps; the members' changes are known only through their
 * tunnels, and `--dry-run` says which members would move).
 */
export const moveMembersToKsctlAgent: MemberMigration = {
  check: () => Promise.resolve(),
  async migrate(host, members, switchProxy) {
    if (members.length === 0) {
      await switchProxy()
      return {changes: [], unfinished: []}
    }
    const report = await migrateMembersToKsctlAgent(host, {switchProxy, say: (line) => log.info(line)})
    const changes = report.members.flatMap((member) => member.changes)
    if (!report.switched) {
      throw notSwitchedError(
        host,
        report,
        "every member was put back on Tower's agent and Tower's proxy was not stopped",
        "the migration reaches each member through its Cluster's kubeconfig (Service mc-NAME's ClusterIP): run the install where the host's Service network routes, e.g. on a node of the host",
      )
    }
    const failed = unmovedMembers(report)
    return {changes, unfinished: failed.map((member) => `${member.name}: ${member.error ?? 'failed'}`)}
  },
}

/**
 * For `-o yaml` (GitOps): moving members happens through their tunnels while the install runs, which applied
 * manifests cannot do, so members on Tower's agent stop the rendering, which names them with what to do.
 */
export const refuseMigration: MemberMigration = {
  check(host, members) {
    if (members.length === 0) return Promise.resolve()
    const names = members.map((member) => member.name)
    return Promise.reject(
      new KsctlError(
        `${String(members.length)} proxy cluster(s) on context "${host.context}" run Tower's agent, which cannot ` +
          `reach ksctl's proxy: ${members.map((member) => `${member.name} (${member.because})`).join('; ')}; nothing was changed`,
        {
          code: 'PRECONDITION_FAILED',
          context: host.context,
          object: {resource: 'clusters.cluster.kubesphere.io', name: names[0] ?? ''},
          suggestions: [
            `-o yaml cannot move members to ksctl's agent (that happens through their tunnels during the install): run ksctl proxy install --context ${host.context} without -o, which does`,
            'or take them off the host first: ' +
              `ksctl member leave ${names[0] ?? 'NAME'} --host-context ${host.context} --member-context MEMBER`,
            "or leave Tower in place; members joined after the install run ksctl's agent: ksctl member join NAME --runtime ksctl",
          ],
        },
      ),
    )
  },
  migrate: () => Promise.reject(new Error('internal error: -o yaml applies nothing')),
}

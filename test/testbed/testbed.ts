import {rmSync} from 'node:fs'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {issueCertificate} from '../../src/pki/certificates.js'
import {resolveBinaries} from '../../src/local-cluster/binaries.js'
import {
  localKubeconfigYaml,
  startLocalClusters,
  type LocalCluster,
  type LocalClusters,
} from '../../src/local-cluster/cluster.js'
import {type ClientCertificate, request} from '../../src/local-cluster/http.js'
import {onExitOrSignal} from '../../src/local-cluster/processes.js'

export type ApiServer = LocalCluster

export interface TestBed {
  dir: string
  kubeconfigPath: string
  caCertPem: string
  versions: {kubeApiserver: string; etcd: string}
  clusters: {host: ApiServer; member: ApiServer}
  stop(): Promise<void>
}

export interface TestBedOptions {
  log?: (line: string) => void
}

export const limitedUser = 'ksctl-limited'
/** Reads everything, writes nothing: contexts `host-readonly` and `member-readonly`. */
export const readOnlyUser = 'ksctl-readonly'

/**
 * The cluster tests' two clusters, `host` and `member`, started by the code the playground uses
 * (src/local-cluster), with the binaries it finds the same way; the test bed adds two users of its own (a
 * limited one and a read-only one) and a kubeconfig with a context for each user of each cluster.
 */
export async function startTestBed({log = writeToStderr}: TestBedOptions = {}): Promise<TestBed> {
  const binaries = await resolveBinaries()
  const startedAt = performance.now()
  const keepDir = process.env.KSCTL_TESTBED_KEEP === '1'
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ksctl-testbed-'))
  if (keepDir) log(`test bed directory (kept): ${dir}`)
  const forgetDirCleanup = onExitOrSignal(() => {
    if (!keepDir) rmSync(dir, {recursive: true, force: true, maxRetries: 3})
  })
  const removeDir = async () => {
    forgetDirCleanup()
    if (!keepDir) await rm(dir, {recursive: true, force: true, maxRetries: 3})
  }
  const kubeconfigPath = path.join(dir, 'kubeconfig')

  const local = await startLocalClusters({
    dir,
    names: ['host', 'member'],
    binaries,
    validityDays: 2,
    log,
  }).catch(async (error: unknown) => {
    await removeDir()
    throw error
  })
  try {
    log(
      `kube-apiserver ${local.versions.kubeApiserver}, etcd ${local.versions.etcd} (from ${binaries.source})`,
    )
    const [limited, readOnly] = await Promise.all([
      clientCertificate(local.ca, limitedUser),
      clientCertificate(local.ca, readOnlyUser),
    ])
    await Promise.all(local.clusters.map((cluster) => grantTestUsers(cluster, local.admin)))
    const users = [
      {suffix: 'admin', certificate: local.admin, contextSuffix: ''},
      {suffix: 'limited', certificate: limited, contextSuffix: '-limited'},
      {suffix: 'readonly', certificate: readOnly, contextSuffix: '-readonly'},
    ]
    await writeFile(kubeconfigPath, localKubeconfigYaml(local.clusters, local.ca.certPem, users, 'host'), {
      mode: 0o600,
    })
  } catch (error) {
    await local.stop()
    await removeDir()
    throw error
  }
  const [host, member] = local.clusters as [ApiServer, ApiServer]
  log(
    `test bed ready in ${((performance.now() - startedAt) / 1000).toFixed(1)} s: host ${host.url}, member ${member.url}`,
  )

  let stopping: Promise<void> | undefined
  return {
    dir,
    kubeconfigPath,
    caCertPem: local.ca.certPem,
    versions: local.versions,
    clusters: {host, member},
    stop() {
      stopping ??= (async () => {
        await local.stop()
        await removeDir()
        if (keepDir) log(`test bed directory kept: ${dir}`)
      })()
      return stopping
    },
  }
}

function writeToStderr(line: string): void {
  process.stderr.write(`${line}\n`)
}

async function clientCertificate(ca: LocalClusters['ca'], commonName: string): Promise<ClientCertificate> {
  const issued = await issueCertificate(ca, {commonName, usage: 'client', validityDays: 2})
  return {caPem: ca.certPem, certPem: issued.certPem, keyPem: issued.keyPem}
}

async function grantTestUsers(cluster: ApiServer, admin: ClientCertificate): Promise<void> {
  const grants = [
    {
      user: limitedUser,
      rules: [{apiGroups: [''], resources: ['namespaces', 'configmaps'], verbs: ['get', 'list']}],
    },
    {user: readOnlyUser, rules: [{apiGroups: ['*'], resources: ['*'], verbs: ['get', 'list', 'watch']}]},
  ]
  const rbac = `${cluster.url}/apis/rbac.authorization.k8s.io/v1`
  for (const {user, rules} of grants) {
    const role = {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: {name: user},
      rules,
    }
    const binding = {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: {name: user},
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: user},
      subjects: [{apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user}],
    }
    for (const [resource, object] of [
      ['clusterroles', role],
      ['clusterrolebindings', binding],
    ] as const) {
      const response = await request(`${rbac}/${resource}`, {
        method: 'POST',
        json: object,
        credentials: admin,
      })
      if (response.status !== 201) {
        throw new Error(
          `${cluster.name}: creating ${resource}/${user} failed: HTTP ${response.status} ${response.body}`,
        )
      }
    }
  }
}

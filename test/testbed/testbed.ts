import {rmSync} from 'node:fs'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'
import {execa} from 'execa'
import {dump} from 'js-yaml'
import {
  type CertificateAndKey,
  createCertificateAuthority,
  generateKeyPairPem,
  issueCertificate,
} from '../../src/pki/certificates.js'
import {type ClientCertificate, freePort, request} from './http.js'
import {type ManagedProcess, onAbnormalExit, startProcess} from './processes.js'

export interface ApiServer {
  name: ClusterName
  url: string
  port: number
  etcdUrl: string
  /** Stops this cluster's kube-apiserver, then its etcd. */
  stop(): Promise<void>
}

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

export type ClusterName = 'host' | 'member'

export const adminUser = 'ksctl-admin'
export const limitedUser = 'ksctl-limited'
/** Reads everything, writes nothing: contexts `host-readonly` and `member-readonly`. */
export const readOnlyUser = 'ksctl-readonly'
const clusterNames: ClusterName[] = ['host', 'member']
const readyTimeoutMs = 90_000
const buildScript = path.join(import.meta.dirname, 'build.sh')

interface Binaries {
  kubeApiserver: string
  etcd: string
}

interface RunCredentials {
  ca: CertificateAndKey
  serving: CertificateAndKey
  admin: ClientCertificate
  limited: ClientCertificate
  readOnly: ClientCertificate
}

class PortClashError extends Error {}

export async function startTestBed({log = writeToStderr}: TestBedOptions = {}): Promise<TestBed> {
  const binaries = await buildBinaries()
  const versions = await readVersions(binaries)
  log(`kube-apiserver ${versions.kubeApiserver}`)
  log(`etcd ${versions.etcd}`)

  const startedAt = performance.now()
  const credentials = await createRunCredentials()
  const keepDir = process.env.KSCTL_TESTBED_KEEP === '1'
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ksctl-testbed-'))
  if (keepDir) log(`test bed directory (kept): ${dir}`)
  const forgetDirCleanup = onAbnormalExit(() => {
    if (!keepDir) rmSync(dir, {recursive: true, force: true, maxRetries: 3})
  })
  const removeDir = async () => {
    forgetDirCleanup()
    if (!keepDir) await rm(dir, {recursive: true, force: true, maxRetries: 3})
  }
  const kubeconfigPath = path.join(dir, 'kubeconfig')

  const started: ApiServer[] = []
  try {
    const starts = clusterNames.map((name) =>
      startClusterRetryingPortClash(name, dir, binaries, credentials, log),
    )
    const results = await Promise.allSettled(starts)
    for (const result of results) if (result.status === 'fulfilled') started.push(result.value)
    const failure = results.find((result) => result.status === 'rejected')
    if (failure) throw failure.reason
    await Promise.all(started.map((cluster) => grantLimitedAccess(cluster, credentials.admin)))
    await writeFile(kubeconfigPath, kubeconfigYaml(started, credentials), {mode: 0o600})
  } catch (error) {
    await Promise.all(started.map((cluster) => cluster.stop()))
    await removeDir()
    throw error
  }
  const [host, member] = started as [ApiServer, ApiServer]
  log(
    `test bed ready in ${((performance.now() - startedAt) / 1000).toFixed(1)} s: host ${host.url}, member ${member.url}`,
  )

  let stopping: Promise<void> | undefined
  return {
    dir,
    kubeconfigPath,
    caCertPem: credentials.ca.certPem,
    versions,
    clusters: {host, member},
    stop() {
      stopping ??= (async () => {
        await Promise.all(started.map((cluster) => cluster.stop()))
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

async function buildBinaries(): Promise<Binaries> {
  // The build reports progress on stderr, which matters during a cold build of several minutes.
  const {stdout} = await execa(buildScript, {stderr: 'inherit'})
  const binDir = stdout.trim().split('\n').at(-1) ?? ''
  return {kubeApiserver: path.join(binDir, 'kube-apiserver'), etcd: path.join(binDir, 'etcd')}
}

async function readVersions(binaries: Binaries): Promise<TestBed['versions']> {
  const kubeApiserver = (await execa(binaries.kubeApiserver, ['--version'])).stdout
  const etcd = (await execa(binaries.etcd, ['--version'])).stdout
  return {
    kubeApiserver: matchOrThrow(
      kubeApiserver,
      /^Kubernetes (v\d+\.\d+\.\d+\S*)$/m,
      'kube-apiserver --version',
    ),
    etcd: `v${matchOrThrow(etcd, /^etcd Version: (\d+\.\d+\.\d+\S*)$/m, 'etcd --version')}`,
  }
}

function matchOrThrow(text: string, pattern: RegExp, source: string): string {
  const version = pattern.exec(text)?.[1]
  if (!version) throw new Error(`cannot read a version from ${source}: ${text}`)
  return version
}

async function createRunCredentials(): Promise<RunCredentials> {
  const ca = await createCertificateAuthority({commonName: 'ksctl-testbed-ca', validityDays: 2})
  const [serving, admin, limited, readOnly] = await Promise.all([
    issueCertificate(ca, {
      commonName: 'kube-apiserver',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    }),
    issueCertificate(ca, {commonName: adminUser, organizations: ['system:masters'], usage: 'client'}),
    issueCertificate(ca, {commonName: limitedUser, usage: 'client'}),
    issueCertificate(ca, {commonName: readOnlyUser, usage: 'client'}),
  ])
  return {
    ca,
    serving,
    admin: {caPem: ca.certPem, certPem: admin.certPem, keyPem: admin.keyPem},
    limited: {caPem: ca.certPem, certPem: limited.certPem, keyPem: limited.keyPem},
    readOnly: {caPem: ca.certPem, certPem: readOnly.certPem, keyPem: readOnly.keyPem},
  }
}

async function startClusterRetryingPortClash(
  name: ClusterName,
  runDir: string,
  binaries: Binaries,
  credentials: RunCredentials,
  log: (line: string) => void,
): Promise<ApiServer> {
  try {
    return await startCluster(name, runDir, binaries, credentials)
  } catch (error) {
    if (!(error instanceof PortClashError)) throw error
    log(`${name}: a port was taken meanwhile, retrying on other ports`)
    return startCluster(name, runDir, binaries, credentials)
  }
}

async function startCluster(
  name: ClusterName,
  runDir: string,
  binaries: Binaries,
  credentials: RunCredentials,
): Promise<ApiServer> {
  const clusterDir = path.join(runDir, name)
  await rm(clusterDir, {recursive: true, force: true})
  await mkdir(path.join(clusterDir, 'certs'), {recursive: true})
  const [etcdClientPort, etcdPeerPort, port] = [await freePort(), await freePort(), await freePort()]
  const etcdUrl = `http://127.0.0.1:${etcdClientPort}`
  const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`
  const etcd = startProcess(
    `${name} etcd`,
    binaries.etcd,
    [
      `--name=${name}`,
      `--data-dir=${path.join(clusterDir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${etcdPeerUrl}`,
      `--initial-advertise-peer-urls=${etcdPeerUrl}`,
      `--initial-cluster=${name}=${etcdPeerUrl}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ],
    path.join(clusterDir, 'etcd.log'),
  )
  let apiserver: ManagedProcess | undefined
  const stop = async () => {
    await apiserver?.stop()
    await etcd.stop()
  }
  try {
    await waitUntil(etcd, `${etcdUrl}/health`, undefined)

    const files = await writeClusterFiles(clusterDir, credentials)
    const url = `https://127.0.0.1:${port}`
    apiserver = startProcess(
      `${name} kube-apiserver`,
      binaries.kubeApiserver,
      [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${port}`,
        `--cert-dir=${path.join(clusterDir, 'certs')}`,
        `--tls-cert-file=${files.servingCert}`,
        `--tls-private-key-file=${files.servingKey}`,
        `--client-ca-file=${files.ca}`,
        '--authorization-mode=RBAC',
        '--service-account-issuer=https://kubernetes.default.svc',
        `--service-account-key-file=${files.serviceAccountPublicKey}`,
        `--service-account-signing-key-file=${files.serviceAccountPrivateKey}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        // The reconciler would publish 127.0.0.1 as the kubernetes Service endpoint, which validation
        // rejects for loopback addresses, and it would log that failure every ten seconds.
        '--endpoint-reconciler-type=none',
        // Without kube-controller-manager nobody creates the default ServiceAccount this plugin insists on.
        '--disable-admission-plugins=ServiceAccount',
        '--allow-privileged=true',
        '--profiling=false',
      ],
      path.join(clusterDir, 'kube-apiserver.log'),
    )
    await waitUntil(apiserver, `${url}/readyz?verbose`, credentials.admin)
    // Ready means the bootstrap controllers ran, but tests also rely on the namespace they create.
    await waitUntil(apiserver, `${url}/api/v1/namespaces/default`, credentials.admin)
    return {name, url, port, etcdUrl, stop}
  } catch (error) {
    await stop()
    throw error
  }
}

async function writeClusterFiles(clusterDir: string, credentials: RunCredentials) {
  const serviceAccountKeys = generateKeyPairPem()
  const files = {
    ca: path.join(clusterDir, 'ca.crt'),
    servingCert: path.join(clusterDir, 'serving.crt'),
    servingKey: path.join(clusterDir, 'serving.key'),
    serviceAccountPublicKey: path.join(clusterDir, 'sa.pub'),
    serviceAccountPrivateKey: path.join(clusterDir, 'sa.key'),
  }
  await Promise.all([
    writeFile(files.ca, credentials.ca.certPem),
    writeFile(files.servingCert, credentials.serving.certPem),
    writeFile(files.servingKey, credentials.serving.keyPem, {mode: 0o600}),
    writeFile(files.serviceAccountPublicKey, serviceAccountKeys.publicKeyPem),
    writeFile(files.serviceAccountPrivateKey, serviceAccountKeys.privateKeyPem, {mode: 0o600}),
  ])
  return files
}

/** Polls `url` until it answers 200, failing early if the process dies and late with its log tail. */
async function waitUntil(
  child: ManagedProcess,
  url: string,
  credentials: ClientCertificate | undefined,
): Promise<void> {
  const deadline = Date.now() + readyTimeoutMs
  let lastAnswer = 'no answer yet'
  while (!child.hasExited() && Date.now() < deadline) {
    try {
      const response = await request(url, {credentials, timeoutMs: 3000})
      if (response.status === 200) return
      lastAnswer = `HTTP ${response.status}: ${response.body.trim()}`
    } catch (error) {
      lastAnswer = error instanceof Error ? error.message : String(error)
    }
    await Promise.race([delay(200), child.exited])
  }
  const logTail = await child.logTail()
  const reason = child.hasExited() ? 'exited' : `was not ready after ${readyTimeoutMs / 1000} s`
  const message = `${child.name} ${reason} (GET ${url}: ${lastAnswer})\nlast lines of ${child.logPath}:\n${logTail}`
  if (child.hasExited() && /address already in use/.test(logTail)) throw new PortClashError(message)
  throw new Error(message)
}

async function grantLimitedAccess(cluster: ApiServer, admin: ClientCertificate): Promise<void> {
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

function kubeconfigYaml(clusters: ApiServer[], credentials: RunCredentials): string {
  const base64 = (pem: string) => Buffer.from(pem).toString('base64')
  const user = (certificate: ClientCertificate) => ({
    'client-certificate-data': base64(certificate.certPem),
    'client-key-data': base64(certificate.keyPem),
  })
  return dump({
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'host',
    clusters: clusters.map(({name, url}) => ({
      name,
      cluster: {server: url, 'certificate-authority-data': base64(credentials.ca.certPem)},
    })),
    users: [
      ...clusters.map(({name}) => ({name: `${name}-admin`, user: user(credentials.admin)})),
      ...clusters.map(({name}) => ({name: `${name}-limited`, user: user(credentials.limited)})),
      ...clusters.map(({name}) => ({name: `${name}-readonly`, user: user(credentials.readOnly)})),
    ],
    contexts: [
      ...clusters.map(({name}) => ({name, context: {cluster: name, user: `${name}-admin`}})),
      ...clusters.map(({name}) => ({
        name: `${name}-limited`,
        context: {cluster: name, user: `${name}-limited`},
      })),
      ...clusters.map(({name}) => ({
        name: `${name}-readonly`,
        context: {cluster: name, user: `${name}-readonly`},
      })),
    ],
  })
}

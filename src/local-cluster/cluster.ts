import {mkdir, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {execa} from 'execa'
import {dump} from 'js-yaml'

import {
  type CertificateAndKey,
  createCertificateAuthority,
  generateKeyPairPem,
  issueCertificate,
} from '../pki/certificates.js'
import type {LocalClusterBinaries} from './binaries.js'
import {type ClientCertificate, freePort, request} from './http.js'
import {type ManagedProcess, startProcess, type StartOptions} from './processes.js'

/** One local cluster: a kube-apiserver and its etcd, on 127.0.0.1. */
export interface LocalCluster {
  name: string
  url: string
  port: number
  etcdUrl: string
  processes: {etcd: ManagedProcess; kubeApiserver: ManagedProcess}
  /** Stops this cluster's kube-apiserver, then its etcd. */
  stop(): Promise<void>
}

/** Local clusters that share one CA, which signs their serving certificates and their users' client certificates. */
export interface LocalClusters {
  clusters: LocalCluster[]
  ca: CertificateAndKey
  /** `system:masters`: what every cluster's `admin` context uses. */
  admin: ClientCertificate
  versions: {kubeApiserver: string; etcd: string}
  stop(): Promise<void>
}

export interface LocalClusterOptions {
  /** Each cluster keeps its etcd data, certificates and logs in `dir/NAME`. */
  dir: string
  names: string[]
  binaries: LocalClusterBinaries
  /** What the certificates the run makes are valid for: a test run, a playground. */
  validityDays: number
  log: (line: string) => void
  /** How the servers are started (see {@link StartOptions}). */
  processOptions?: StartOptions
}

const readyTimeoutMs = 90_000

class PortClashError extends Error {}

/**
 * Starts one kube-apiserver with its etcd per name, side by side, each on free ports of 127.0.0.1, and returns
 * once every one serves `default` (created by its bootstrap controllers). Without kube-controller-manager,
 * a scheduler or nodes: an API server alone, which is what ksctl talks to.
 */
export async function startLocalClusters(options: LocalClusterOptions): Promise<LocalClusters> {
  const [versions, credentials] = await Promise.all([
    readVersions(options.binaries),
    createCredentials(options.validityDays),
  ])
  const started: LocalCluster[] = []
  const results = await Promise.allSettled(
    options.names.map((name) => startClusterRetryingPortClash(name, options, credentials)),
  )
  for (const result of results) if (result.status === 'fulfilled') started.push(result.value)
  const failure = results.find((result) => result.status === 'rejected')
  if (failure) {
    await Promise.all(started.map((cluster) => cluster.stop()))
    throw failure.reason
  }
  let stopping: Promise<void> | undefined
  return {
    clusters: started,
    ca: credentials.ca,
    admin: credentials.admin,
    versions,
    stop() {
      stopping ??= Promise.all(started.map((cluster) => cluster.stop())).then(() => undefined)
      return stopping
    },
  }
}

/** A kubeconfig with one context per cluster, named as the cluster, each with its user (`NAME-USER`). */
export function localKubeconfigYaml(
  clusters: Pick<LocalCluster, 'name' | 'url'>[],
  caPem: string,
  users: {suffix: string; certificate: ClientCertificate; contextSuffix: string}[],
  currentContext: string,
): string {
  const base64 = (pem: string) => Buffer.from(pem).toString('base64')
  return dump({
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': currentContext,
    clusters: clusters.map(({name, url}) => ({
      name,
      cluster: {server: url, 'certificate-authority-data': base64(caPem)},
    })),
    users: users.flatMap(({suffix, certificate}) =>
      clusters.map(({name}) => ({
        name: `${name}-${suffix}`,
        user: {
          'client-certificate-data': base64(certificate.certPem),
          'client-key-data': base64(certificate.keyPem),
        },
      })),
    ),
    contexts: users.flatMap(({suffix, contextSuffix}) =>
      clusters.map(({name}) => ({
        name: `${name}${contextSuffix}`,
        context: {cluster: name, user: `${name}-${suffix}`},
      })),
    ),
  })
}

interface Credentials {
  ca: CertificateAndKey
  serving: CertificateAndKey
  admin: ClientCertificate
}

async function createCredentials(validityDays: number): Promise<Credentials> {
  const ca = await createCertificateAuthority({commonName: 'ksctl-local-clusters-ca', validityDays})
  const [serving, admin] = await Promise.all([
    issueCertificate(ca, {
      commonName: 'kube-apiserver',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
      validityDays,
    }),
    issueCertificate(ca, {
      commonName: 'ksctl-admin',
      organizations: ['system:masters'],
      usage: 'client',
      validityDays,
    }),
  ])
  return {ca, serving, admin: {caPem: ca.certPem, certPem: admin.certPem, keyPem: admin.keyPem}}
}

async function readVersions(binaries: LocalClusterBinaries): Promise<LocalClusters['versions']> {
  const [kubeApiserver, etcd] = await Promise.all([
    execa(binaries.kubeApiserver, ['--version']),
    execa(binaries.etcd, ['--version']),
  ])
  return {
    kubeApiserver: matchOrThrow(
      kubeApiserver.stdout,
      /^Kubernetes (v\d+\.\d+\.\d+\S*)$/m,
      `${binaries.kubeApiserver} --version`,
    ),
    etcd: `v${matchOrThrow(etcd.stdout, /^etcd Version: (\d+\.\d+\.\d+\S*)$/m, `${binaries.etcd} --version`)}`,
  }
}

function matchOrThrow(text: string, pattern: RegExp, source: string): string {
  const version = pattern.exec(text)?.[1]
  if (!version) throw new Error(`cannot read a version from ${source}: ${text}`)
  return version
}

async function startClusterRetryingPortClash(
  name: string,
  options: LocalClusterOptions,
  credentials: Credentials,
): Promise<LocalCluster> {
  try {
    return await startCluster(name, options, credentials)
  } catch (error) {
    if (!(error instanceof PortClashError)) throw error
    options.log(`${name}: a port was taken meanwhile, retrying on other ports`)
    return startCluster(name, options, credentials)
  }
}

async function startCluster(
  name: string,
  options: LocalClusterOptions,
  credentials: Credentials,
): Promise<LocalCluster> {
  const {binaries, processOptions} = options
  const clusterDir = path.join(options.dir, name)
  await rm(clusterDir, {recursive: true, force: true})
  await mkdir(path.join(clusterDir, 'certs'), {recursive: true, mode: 0o700})
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
    processOptions,
  )
  let kubeApiserver: ManagedProcess | undefined
  const stop = async () => {
    await kubeApiserver?.stop()
    await etcd.stop()
  }
  try {
    await waitUntilReady(etcd, `${etcdUrl}/health`, undefined)

    const files = await writeClusterFiles(clusterDir, credentials)
    const url = `https://127.0.0.1:${port}`
    kubeApiserver = startProcess(
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
      processOptions,
    )
    await waitUntilReady(kubeApiserver, `${url}/readyz?verbose`, credentials.admin)
    // Ready means the bootstrap controllers ran, but callers also rely on the namespace they create.
    await waitUntilReady(kubeApiserver, `${url}/api/v1/namespaces/default`, credentials.admin)
    return {name, url, port, etcdUrl, processes: {etcd, kubeApiserver}, stop}
  } catch (error) {
    await stop()
    throw error
  }
}

async function writeClusterFiles(clusterDir: string, credentials: Credentials) {
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

/**
 * Polls `url` until it answers 200, failing early if the process dies (with its log tail) and after 90 s. The
 * playground waits on its tower processes' /readyz with it too.
 */
export async function waitUntilReady(
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
    await Promise.race([delay(100), child.exited])
  }
  const logTail = await child.logTail()
  const reason = child.hasExited() ? 'exited' : `was not ready after ${readyTimeoutMs / 1000} s`
  const message = `${child.name} ${reason} (GET ${url}: ${lastAnswer})\nlast lines of ${child.logPath}:\n${logTail}`
  if (child.hasExited() && /address already in use/.test(logTail)) throw new PortClashError(message)
  throw new Error(message)
}

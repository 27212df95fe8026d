/**
 * Everything ksctl-specific of the bench: the tower runtime's command lines, its certificates and its
 * availability check. When the runtime's flags change, this file is the one to edit.
 */
import {existsSync} from 'node:fs'
import {copyFile, mkdir, readFile, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from '../../src/pki/certificates.js'
import {issueClientCertificate} from '../../src/tower/proxy/client-binding.js'
import {freePort, runCommand, startProcess, waitUntil, type ManagedProcess} from '../processes.js'
import type {Upstream} from '../upstream.js'
import type {AgentFleet, BenchPath, Endpoint, PathName} from './path.js'
import {removeDirectory, temporaryDirectory, waitForEndpoint} from './tunnel-process.js'

const packageRoot = fileURLToPath(new URL('../../', import.meta.url))
const ksctl = path.join(packageRoot, 'bin', 'run.js')
const builtTowerCommands = ['proxy', 'agent'].map((name) =>
  path.join(packageRoot, 'dist', 'commands', 'tower', `${name}.js`),
)
const clusterName = 'bench'

interface Variant {
  name: PathName
  /** TLS on the agent link and an HTTPS front end with client certificates; otherwise plain on both. */
  tls: boolean
  /**
   * With TLS, what the path-routed front end reaches: the agent's `kubesphere` destination (the bench's plain
   * upstream, as the peers reach it), or its `kubernetes` destination (the upstream's TLS port with a member
   * credential put into every request, as kube-apiserver is reached: one more TLS hop and an HTTP relay).
   */
  destination: 'kubesphere' | 'kubernetes'
}

async function towerRuntimeAvailability(): Promise<{available: true} | {available: false; reason: string}> {
  const missing = builtTowerCommands.filter((file) => !existsSync(file))
  if (missing.length > 0) {
    return {
      available: false,
      reason: `the tower runtime is not built yet (${missing.map((file) => path.relative(packageRoot, file)).join(', ')} missing; npm run build)`,
    }
  }
  for (const command of ['proxy', 'agent']) {
    const help = await runCommand(process.execPath, [ksctl, 'tower', command, '--help'])
    if (help.code !== 0)
      return {available: false, reason: `ksctl tower ${command} --help failed: ${help.output}`}
  }
  return {available: true}
}

async function writePem(
  directory: string,
  name: string,
  pair: CertificateAndKey,
): Promise<{cert: string; key: string}> {
  const files = {cert: path.join(directory, `${name}.crt`), key: path.join(directory, `${name}.key`)}
  await writeFile(files.cert, pair.certPem)
  await writeFile(files.key, pair.keyPem, {mode: 0o600})
  return files
}

function clustersYaml(clusters: {name: string; token: string; kubespherePort?: number}[]): string {
  return clusters
    .map(({name, token, kubespherePort}) =>
      [
        `- name: ${name}`,
        `  token: ${token}`,
        ...(kubespherePort === undefined ? [] : [`  kubespherePort: ${kubespherePort}`]),
      ].join('\n'),
    )
    .join('\n')
}

function tokenFor(name: string): string {
  return `bench-token-${name}-0123456789abcdef0123456789`
}

/**
 * The agent's `kubernetes` destination (ksctl-tls-kube) reaches the upstream's TLS port as an in-cluster
 * agent reaches kube-apiserver: with a service-account directory (token and ca.crt).
 */
async function writeServiceAccount(directory: string, upstream: Upstream): Promise<string> {
  const serviceAccount = path.join(directory, 'serviceaccount')
  await mkdir(serviceAccount, {recursive: true})
  await writeFile(path.join(serviceAccount, 'token'), 'bench-upstream-token')
  await copyFile(upstream.caFile, path.join(serviceAccount, 'ca.crt'))
  return serviceAccount
}

interface ProxySetup {
  directory: string
  proxy: ManagedProcess
  agentLinkUrl: string
  caFile: string
  endpoint: (kubespherePort: number | undefined) => Endpoint
}

async function startProxy(
  variant: Variant,
  clusters: {name: string; kubespherePort?: number}[],
): Promise<ProxySetup> {
  const directory = await temporaryDirectory(variant.name)
  const ca = await createCertificateAuthority({commonName: 'ksctl bench proxy CA', validityDays: 2})
  const caFiles = await writePem(directory, 'proxy-ca', ca)
  const linkPort = await freePort()
  const frontEndPort = await freePort()
  const clustersFile = path.join(directory, 'clusters.yaml')
  await writeFile(
    clustersFile,
    clustersYaml(clusters.map((cluster) => ({...cluster, token: tokenFor(cluster.name)}))),
  )
  const linkTls = variant.tls
    ? await writePem(
        directory,
        'agent-link',
        await issueCertificate(ca, {commonName: '127.0.0.1', ipAddresses: ['127.0.0.1'], usage: 'server'}),
      )
    : undefined
  const client = await writePem(
    directory,
    'front-end-client',
    // Bound to the bench's cluster, as the front ends require; the agent impersonates its user at the upstream.
    await issueClientCertificate(ca, {cluster: clusterName, identity: {user: 'bench-client', groups: []}}),
  )
  const proxy = startProcess(`ksctl tower proxy (${variant.name})`, process.execPath, [
    ksctl,
    'tower',
    'proxy',
    '--clusters',
    clustersFile,
    '--listen',
    `127.0.0.1:${linkPort}`,
    ...(linkTls === undefined
      ? ['--insecure-plain']
      : ['--tls-cert', linkTls.cert, '--tls-key', linkTls.key]),
    '--ca-cert',
    caFiles.cert,
    '--ca-key',
    caFiles.key,
    '--front-end',
    `127.0.0.1:${frontEndPort}`,
    '--state-dir',
    path.join(directory, 'state'),
  ])
  return {
    directory,
    proxy,
    agentLinkUrl: `${variant.tls ? 'https' : 'http'}://127.0.0.1:${linkPort}`,
    caFile: caFiles.cert,
    endpoint: (kubespherePort) =>
      kubespherePort === undefined
        ? {
            baseUrl: `https://127.0.0.1:${frontEndPort}/clusters/${clusterName}${variant.destination === 'kubesphere' ? '/destinations/kubesphere' : ''}`,
            tls: {caFile: caFiles.cert, certFile: client.cert, keyFile: client.key},
          }
        : {baseUrl: `http://127.0.0.1:${kubespherePort}`},
  }
}

function ksctlPath(variant: Variant): BenchPath {
  return {
    name: variant.name,
    prepare: towerRuntimeAvailability,
    start: async (upstream) => {
      const kubespherePort = variant.tls ? undefined : await freePort()
      const setup = await startProxy(variant, [
        {name: clusterName, ...(kubespherePort !== undefined && {kubespherePort})},
      ])
      const serviceAccount = await writeServiceAccount(setup.directory, upstream)
      const startAgent = (): ManagedProcess =>
        startProcess(`ksctl tower agent (${variant.name})`, process.execPath, [
          ksctl,
          'tower',
          'agent',
          '--name',
          clusterName,
          '--token',
          tokenFor(clusterName),
          '--proxy-server',
          setup.agentLinkUrl,
          ...(variant.tls ? ['--proxy-ca', setup.caFile] : ['--insecure-plain']),
          '--kubernetes-service',
          `127.0.0.1:${upstream.tlsPort}`,
          '--service-account-dir',
          serviceAccount,
          '--kubesphere-service',
          `127.0.0.1:${upstream.httpPort}`,
        ])
      let agent = startAgent()
      const endpoint = setup.endpoint(kubespherePort)
      const stop = async (): Promise<void> => {
        await agent.stop()
        await setup.proxy.stop()
        await removeDirectory(setup.directory)
      }
      try {
        await waitForEndpoint(endpoint, [setup.proxy, agent])
      } catch (error) {
        await stop()
        throw error
      }
      return {
        endpoint,
        processes: () => [
          {side: 'server', label: 'ksctl tower proxy', pid: setup.proxy.pid},
          {side: 'agent', label: 'ksctl tower agent', pid: agent.pid},
        ],
        agentRestart: {
          kill: () => agent.kill(),
          start: async () => {
            agent = startAgent()
          },
        },
        stop,
      }
    },
    startAgentFleet: (upstream, count) => startAgentFleet(variant, upstream, count),
  }
}

/**
 * A thousand agent processes would measure Node's per-process baseline, not the proxy; the fleet runs
 * the runtime's agent class in the harness process, each instance with its own connection. Loaded on use,
 * so that the rest of the bench works while the runtime is unfinished.
 */
async function startAgentFleet(variant: Variant, upstream: Upstream, count: number): Promise<AgentFleet> {
  const [
    {TowerAgent, normalizeProxyUrl},
    {buildDestinations, serviceAccountCredentials},
    {TowerMetrics},
    {log},
    {defaultKeepalive, parseKeepalive},
  ] = await Promise.all([
    import('../../src/tower/agent/agent.js'),
    import('../../src/tower/agent/agent-dial.js'),
    import('../../src/tower/shared/metrics.js'),
    import('../../src/log.js'),
    import('../../src/tower/shared/keepalive.js'),
  ])
  const names = Array.from({length: count}, (_, index) => `agent-${String(index).padStart(5, '0')}`)
  const setup = await startProxy(
    variant,
    names.map((name) => ({name})),
  )
  const serviceAccount = await writeServiceAccount(setup.directory, upstream)
  // A thousand agents logging their connection (and, over plain ws, a warning each) would flood the report.
  log.configure('error')
  const metrics = new TowerMetrics()
  const proxyCa = variant.tls ? await readFile(setup.caFile, 'utf8') : undefined
  const kubernetes = serviceAccountCredentials(`127.0.0.1:${upstream.tlsPort}`, serviceAccount)
  const agents = names.map(
    (name) =>
      new TowerAgent({
        name,
        token: async () => tokenFor(name),
        proxyUrl: normalizeProxyUrl(setup.agentLinkUrl),
        ...(proxyCa === undefined ? {insecurePlain: true} : {proxyCa}),
        keepaliveMs: parseKeepalive(defaultKeepalive),
        maxRetry: 0,
        maxRetryIntervalMs: 5_000,
        destinations: buildDestinations({
          cluster: name,
          log: log.child({component: 'bench-agent', cluster: name}),
          kubernetes,
          kubesphere: undefined,
          allowed: new Map(),
        }),
        log: log.child({component: 'bench-agent', cluster: name}),
        metrics,
      }),
  )
  const stop = async (): Promise<void> => {
    await Promise.all(agents.map((agent) => agent.stop()))
    await setup.proxy.stop()
    await removeDirectory(setup.directory)
  }
  try {
    await waitUntil('the proxy to accept agents', 30_000, async () => {
      if (!setup.proxy.running) throw new Error(`the proxy exited: ${setup.proxy.output()}`)
      return runCommand('curl', ['-s', '-o', '/dev/null', setup.agentLinkUrl, '-k']).then(
        (result) => result.code === 0,
      )
    })
    const failures: string[] = []
    const startedAt = performance.now()
    for (const agent of agents) agent.start().catch((error: unknown) => failures.push(String(error)))
    await waitUntil(`${count} agents to connect`, 120_000, async () => {
      if (failures.length > 0) throw new Error(`${failures.length} agents failed, first: ${failures[0]}`)
      return agents.every((agent) => agent.ready)
    })
    const connectAllMs = performance.now() - startedAt
    return {proxy: {side: 'server', label: 'ksctl tower proxy', pid: setup.proxy.pid}, connectAllMs, stop}
  } catch (error) {
    await stop()
    throw error
  }
}

export const ksctlTlsPath = ksctlPath({name: 'ksctl-tls', tls: true, destination: 'kubesphere'})
export const ksctlTlsKubernetesPath = ksctlPath({
  name: 'ksctl-tls-kube',
  tls: true,
  destination: 'kubernetes',
})
export const ksctlPlainPath = ksctlPath({name: 'ksctl-plain', tls: false, destination: 'kubesphere'})

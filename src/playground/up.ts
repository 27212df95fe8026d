import {readdirSync, rmSync} from 'node:fs'
import {mkdir, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {
  AppsV1Api,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
} from '@kubernetes/client-node'
import {execa} from 'execa'
import {dump, load} from 'js-yaml'

import {KsctlError} from '../errors.js'
import {ClusterClients} from '../k8s/clients.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {ManifestObjects} from '../k8s/manifest-objects.js'
import {ClusterResource} from '../k8s/resources.js'
import {AGENT_DEPLOYMENT_NAME} from '../kubesphere/agent-manifest.js'
import type {KubeSphereCluster} from '../kubesphere/cluster-object.js'
import {KUBESPHERE_NAMESPACE} from '../kubesphere/constants.js'
import {buildFixture, secrets} from '../kubesphere-standin/fixtures.js'
import {seedCluster} from '../kubesphere-standin/seed.js'
import {STAND_IN_ROLES, startKubeSphereStandIn} from '../kubesphere-standin/stand-in.js'
import {resolveBinaries} from '../local-cluster/binaries.js'
import {localKubeconfigYaml, startLocalClusters, waitUntilReady} from '../local-cluster/cluster.js'
import {freeClusterPorts, freePort} from '../local-cluster/http.js'
import {onExitOrSignal, startProcess, type ManagedProcess} from '../local-cluster/processes.js'
import {packageRoot} from '../package-root.js'
import {PROXY_CA_SECRET} from '../tower/proxy/kubernetes/proxy-ca.js'
import {kubesphereIdentityRbac} from '../tower/shared/identity.js'
import {checkDirFree, LOG_FILE, writeState, type Edition, type PlaygroundState} from './state.js'

export interface PlaygroundUpOptions {
  /** Absolute. */
  dir: string
  edition: Edition
  apiserverBin?: string | undefined
  etcdBin?: string | undefined
  /** Set by a detached `up` for the supervisor it starts: DIR holds its log, and who made DIR. */
  supervised?: {createdDir: boolean}
  /** One line of progress (stderr). */
  say: (line: string) => void
}

export interface RunningPlayground {
  state: PlaygroundState
  /** kubectl commands to try, through the tunnel. */
  tryCommands: string[]
  /** Rejects when a process of the playground exits on its own. */
  failure: Promise<never>
}

export const MEMBER_NAME = 'member1'
export const VIA_TOWER_CONTEXT = 'member-via-tower'
/** How often the stand-in's controllers reconcile: often, so that the flow does not wait on them. */
const STAND_IN_INTERVAL_MS = 100
/** The agent's service account token, as the kubelet's projected volume asks for one (and renews it). */
const TOKEN_SECONDS = 3600
const TOKEN_RENEW_MS = 0.8 * TOKEN_SECONDS * 1000

/**
 * Runs the whole agent connection on this machine (issue 11): two real kube-apiservers with etcd, seeded as a
 * KubeSphere host and member, the stand-in for the KubeSphere controllers the flow waits on, then ksctl's own
 * `host init --wait`, `proxy set-address`, `tower proxy` (Kubernetes mode, in the role of the host's tower),
 * `member join --apply --wait`, and `tower agent` (in the role of the agent Deployment's pod). Resolves once the
 * member has joined; every process it started is killed, and every file it made removed, when this process
 * exits or is interrupted.
 */
export async function playgroundUp(options: PlaygroundUpOptions): Promise<RunningPlayground> {
  const {dir, say} = options
  const startedAt = Date.now()
  const createdDir = options.supervised?.createdDir ?? !checkDirFree(dir).exists
  if (options.supervised !== undefined) checkDirFree(dir, [LOG_FILE])
  await mkdir(dir, {recursive: true, mode: 0o700})
  const state: PlaygroundState = {
    pid: process.pid,
    edition: options.edition,
    phase: 'starting',
    startedAt: new Date(startedAt).toISOString(),
    createdDir,
    kubeconfig: path.join(dir, 'kubeconfig'),
    cluster: MEMBER_NAME,
    processes: [],
  }
  writeState(dir, state, true)
  onExitOrSignal(() => {
    removeWhatWasMade(dir, createdDir)
    say(`playground stopped: every process it started is killed, ${displayPath(dir)} removed`)
  })

  const step = stepCounter(say, 7)
  const binaries = await resolveBinaries({apiserverBin: options.apiserverBin, etcdBin: options.etcdBin})
  const local = await startLocalClusters({
    dir: path.join(dir, 'clusters'),
    names: ['host', 'member'],
    binaries,
    validityDays: 30,
    log: say,
    // Ctrl-C reaches `up` alone, which stops everything (the servers would otherwise stop on their own first).
    processOptions: {ownProcessGroup: true},
  })
  const [hostServer, memberServer] = local.clusters as [
    (typeof local.clusters)[0],
    (typeof local.clusters)[0],
  ]
  step(
    `local clusters: kube-apiserver ${local.versions.kubeApiserver} and etcd ${local.versions.etcd} (${sourceWords[binaries.source]})`,
    [`host   ${hostServer.url}`, `member ${memberServer.url}`],
  )
  for (const cluster of local.clusters) {
    state.processes.push(
      {
        name: `${cluster.name} etcd`,
        pid: cluster.processes.etcd.pid,
        address: cluster.etcdUrl,
        log: cluster.processes.etcd.logPath,
      },
      {
        name: `${cluster.name} kube-apiserver`,
        pid: cluster.processes.kubeApiserver.pid,
        address: cluster.url,
        log: cluster.processes.kubeApiserver.logPath,
      },
    )
  }
  const managed: ManagedProcess[] = local.clusters.flatMap((cluster) => [
    cluster.processes.etcd,
    cluster.processes.kubeApiserver,
  ])
  writeState(dir, state)
  const adminKubeconfig = localKubeconfigYaml(
    local.clusters,
    local.ca.certPem,
    [{suffix: 'admin', certificate: local.admin, contextSuffix: ''}],
    'host',
  )
  await writeFile(state.kubeconfig, adminKubeconfig, {mode: 0o600})

  const clients = ClusterClients.load({kubeconfig: state.kubeconfig}, 10_000)
  const host = clients.forContext('host')
  const member = clients.forContext('member')
  const edition = options.edition === '3' ? 'KubeSphere 3.4' : 'KubeSphere 4.1'
  if (options.edition === '3') {
    // Both as KubeSphere 3.4 installs whose multi-cluster role is none: `host init` makes one the host.
    await Promise.all([
      seedCluster(host.config, buildFixture('ks34-none', {jwtSecret: secrets.hostJwtSecret})),
      seedCluster(member.config, buildFixture('ks34-none')),
    ])
  } else {
    // 4.x: every ks-core install is a host; a member needs nothing beforehand (the agent manifest brings it).
    await seedCluster(host.config, buildFixture('ks41-host', {tower: 'load-balancer-pending'}))
  }
  const standIn = startKubeSphereStandIn({
    host,
    member,
    memberServer: (cluster) => {
      const port = (cluster.spec?.connection as {kubernetesAPIServerPort?: number} | undefined)
        ?.kubernetesAPIServerPort
      return port === undefined ? undefined : `https://127.0.0.1:${String(port)}`
    },
    intervalMs: STAND_IN_INTERVAL_MS,
  })
  step(
    options.edition === '3'
      ? `${edition} seeded from its published objects on both (multi-cluster role: none)`
      : `${edition} seeded from its published objects on the host; the member is a plain cluster`,
    [
      "stand-in: KubeSphere's controllers cannot run here, so ksctl plays the parts the flow waits on:",
      ...STAND_IN_ROLES.map((role) => `  - ${role}`),
      "  - the member's kubelet: runs the agent Deployment's pod as a local process (below)",
    ],
  )

  const ksctl = ksctlRunner(state.kubeconfig, say)
  step('make the host a multi-cluster host')
  await ksctl(['host', 'init', '--context', 'host', '--wait'])

  const [listenPort, frontEndPort, proxyMetricsPort, agentMetricsPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ]
  const proxyAddress = `https://127.0.0.1:${String(listenPort)}`
  const clusterPorts = await freeClusterPorts(4)
  const proxyArgs = [
    ...['tower', 'proxy', '--kubeconfig', state.kubeconfig, '--context', 'host'],
    ...['--listen', `127.0.0.1:${String(listenPort)}`, '--front-end', `127.0.0.1:${String(frontEndPort)}`],
    ...['--cluster-ports', clusterPorts.flag, '--resync', '250ms'],
    ...['--metrics-address', `127.0.0.1:${String(proxyMetricsPort)}`],
  ]
  // As on a real host, where the installer has just started the tower Deployment: the proxy starts while the
  // address it listens on is published.
  step("start ksctl's tower proxy in Kubernetes mode, in the role of the tower Deployment the host now has", [
    `$ ksctl ${displayArgs(proxyArgs)}`,
  ])
  const proxy = startKsctlProcess('tower proxy', proxyArgs, path.join(dir, 'tower-proxy.log'))
  managed.push(proxy)
  state.processes.push({name: 'tower proxy', pid: proxy.pid, address: proxyAddress, log: proxy.logPath})
  writeState(dir, state)

  step('publish the address agents dial: where the tower proxy listens', [
    'its warnings about a loopback address are right for real clusters; here the agent runs on this machine too',
  ])
  await ksctl(['proxy', 'set-address', proxyAddress, '--context', 'host'])
  await waitUntilReady(proxy, `http://127.0.0.1:${String(proxyMetricsPort)}/readyz`, undefined)

  step('join the member; once its agent Deployment is applied, run the agent as its pod would', [
    "KubeSphere's identity (the Cluster's kubeconfig, which the agent impersonates) is bound on the member to what it needs, as ksctl's agent manifest binds it",
  ])
  // The stand-in controller reaches the member as KubeSphere does, with the Cluster's kubeconfig: as user and group
  // ksctl:kubesphere, which the agent impersonates. Tower's agent manifest, which join deploys here, grants it nothing.
  const manifests = new ManifestObjects(member)
  for (const object of kubesphereIdentityRbac()) await manifests.apply(object)
  const joinArgs = [
    ...['member', 'join', MEMBER_NAME, '--host-context', 'host', '--member-context', 'member'],
    ...['--apply', '--wait'],
  ]
  const join = ksctl(joinArgs)
  const agentStarted = (async () => {
    const deployment = await appliedAgentDeployment(member, join)
    if (deployment === undefined) return undefined
    const agent = await startAgent({
      dir,
      host,
      member,
      memberServerUrl: memberServer.url,
      caPem: local.ca.certPem,
      deployment,
      metricsPort: agentMetricsPort,
      say,
    })
    managed.push(agent)
    state.processes.push({name: 'tower agent', pid: agent.pid, address: proxyAddress, log: agent.logPath})
    writeState(dir, state)
    return agent
  })()
  await join
  const agent = await agentStarted
  if (agent === undefined) throw new Error('internal error: the member joined without an agent')

  const cluster = await host.findCustomObject<KubeSphereCluster>(ClusterResource, MEMBER_NAME)
  const port = (cluster?.spec?.connection as {kubernetesAPIServerPort?: number} | undefined)
    ?.kubernetesAPIServerPort
  const issued = cluster?.spec?.connection?.kubeconfig
  if (port === undefined || issued === undefined || issued === '') {
    throw new Error(`internal error: cluster ${MEMBER_NAME} is Ready without an issued kubeconfig`)
  }
  await writeFile(
    state.kubeconfig,
    withViaTowerContext(adminKubeconfig, Buffer.from(issued, 'base64').toString('utf8'), port),
    {mode: 0o600},
  )
  state.phase = 'ready'
  writeState(dir, state)
  step(`member joined in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`, [
    `cluster "${MEMBER_NAME}" is Ready on the host: the stand-in controller reached the member through the tunnel`,
  ])

  const kubectl = `kubectl --kubeconfig ${displayPath(state.kubeconfig)} --context ${VIA_TOWER_CONTEXT}`
  const failure = Promise.race(managed.map((child) => child.exited.then(() => child))).then(
    async (child): Promise<never> => {
      await standIn.stop()
      throw new KsctlError(`${child.name} (pid ${String(child.pid)}) exited: the playground stops`, {
        code: 'INTERNAL',
        suggestions: [`its last lines:\n${await child.logTail(10)}`],
      })
    },
  )
  return {
    state,
    tryCommands: [
      `${kubectl} get namespaces`,
      `${kubectl} get configmaps --namespace default --watch`,
      `${kubectl} create configmap hello --namespace default --from-literal=greeting=hello`,
      `${kubectl} delete configmap hello --namespace default`,
    ],
    failure,
  }
}

const sourceWords = {
  flags: 'from --apiserver-bin and --etcd-bin',
  KUBEBUILDER_ASSETS: 'from KUBEBUILDER_ASSETS',
  cache: "from ksctl's cache",
  build: 'built from the pinned Go modules',
} as const

function stepCounter(say: (line: string) => void, total: number) {
  let number = 0
  return (title: string, details: string[] = []) => {
    number++
    say(`[${String(number)}/${String(total)}] ${title}`)
    for (const detail of details) say(`      ${detail}`)
  }
}

/** Runs a ksctl command as the user would type it, its output (results and progress) on this process's stderr. */
function ksctlRunner(kubeconfig: string, say: (line: string) => void) {
  const runJs = path.join(packageRoot(), 'bin', 'run.js')
  return async (args: string[]): Promise<void> => {
    say(`$ ksctl ${displayArgs(args)}`)
    const child = execa(process.execPath, [runJs, ...args, '--kubeconfig', kubeconfig], {
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'inherit',
      reject: false,
    })
    child.stdout.on('data', (chunk: Buffer) => process.stderr.write(chunk))
    const result = await child
    if (result.exitCode !== 0) {
      throw new KsctlError(
        `ksctl ${args.slice(0, 2).join(' ')} failed (exit code ${String(result.exitCode)}): see above`,
        {
          code: 'INTERNAL',
          suggestions: ['the playground stopped and removed its files; run it again with --log-level debug'],
        },
      )
    }
  }
}

function startKsctlProcess(name: string, args: string[], logPath: string): ManagedProcess {
  const runJs = path.join(packageRoot(), 'bin', 'run.js')
  return startProcess(name, process.execPath, [runJs, ...args], logPath, {ownProcessGroup: true})
}

function displayArgs(args: string[]): string {
  return args.map((arg) => (path.isAbsolute(arg) ? displayPath(arg) : arg)).join(' ')
}

/** A path as the user would type it from here: relative when under the working directory. */
export function displayPath(file: string): string {
  const relative = path.relative(process.cwd(), file)
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file
}

/** Waits until `member join` has applied the agent Deployment on the member; `undefined` if join ended first. */
async function appliedAgentDeployment(
  member: ClusterClient,
  join: Promise<void>,
): Promise<V1Deployment | undefined> {
  const joinEnded = join.then(
    () => true,
    () => true,
  )
  for (;;) {
    const deployment = await member
      .findDeployment(KUBESPHERE_NAMESPACE, AGENT_DEPLOYMENT_NAME)
      .catch(() => undefined)
    if (deployment !== undefined) return deployment
    if (await Promise.race([joinEnded, delay(100, false)])) return undefined
  }
}

/**
 * The member's kubelet, for the agent Deployment's one pod: its container's arguments run as `ksctl tower agent`
 * (ksctl's agent takes Tower's flags), with what the pod would have in files: a token of its service account that
 * the member issues (TokenRequest, renewed before it expires, as the kubelet's projected volume is) and the
 * member's CA, in a directory laid out as /var/run/secrets/kubernetes.io/serviceaccount; the member's API server
 * where KUBERNETES_SERVICE_HOST would point; the tunnel token in a file rather than on the command line; and the
 * proxy CA (from the host's Secret), which a pod of ksctl's agent mounts. Once the agent is ready, the Deployment's
 * status says so, as the deployment controller would.
 */
async function startAgent(options: {
  dir: string
  host: ClusterClient
  member: ClusterClient
  memberServerUrl: string
  caPem: string
  deployment: V1Deployment
  metricsPort: number
  say: (line: string) => void
}): Promise<ManagedProcess> {
  const {deployment, member} = options
  const namespace = deployment.metadata?.namespace ?? KUBESPHERE_NAMESPACE
  const podSpec = deployment.spec?.template.spec
  const container = podSpec?.containers[0]
  const serviceAccount = podSpec?.serviceAccountName ?? 'default'
  const argv = [...(container?.command ?? []).slice(1), ...(container?.args ?? [])]
  const fromManifest = argv[0] === 'tower' && argv[1] === 'agent' ? argv.slice(2) : argv
  const overridden = [
    '--token',
    '--token-file',
    '--kubernetes-service',
    '--service-account-dir',
    '--proxy-ca',
    '--metrics-address',
  ]
  const kept = fromManifest.filter((argument) => !overridden.some((flag) => argument.startsWith(`${flag}=`)))
  const tunnelToken =
    fromManifest.find((argument) => argument.startsWith('--token='))?.slice('--token='.length) ??
    (await options.host.findCustomObject<KubeSphereCluster>(ClusterResource, MEMBER_NAME))?.spec?.connection
      ?.token ??
    ''

  const podDir = path.join(options.dir, 'agent-pod')
  const serviceAccountDir = path.join(podDir, 'serviceaccount')
  await mkdir(serviceAccountDir, {recursive: true, mode: 0o700})
  const core = member.config.makeApiClient(CoreV1Api)
  const writeServiceAccountToken = async () => {
    const request = await core.createNamespacedServiceAccountToken({
      name: serviceAccount,
      namespace,
      body: {spec: {audiences: [], expirationSeconds: TOKEN_SECONDS}},
    })
    await writeFile(path.join(serviceAccountDir, 'token'), request.status?.token ?? '', {mode: 0o600})
  }
  await writeServiceAccountToken()
  // The agent re-reads the token for every stream; the timer must not keep the playground alive by itself.
  setInterval(() => void writeServiceAccountToken().catch(() => undefined), TOKEN_RENEW_MS).unref()
  const proxyCa =
    (await options.host.findSecret(KUBESPHERE_NAMESPACE, PROXY_CA_SECRET))?.data['tls.crt'] ?? ''
  await Promise.all([
    writeFile(path.join(serviceAccountDir, 'ca.crt'), options.caPem),
    writeFile(path.join(serviceAccountDir, 'namespace'), namespace),
    writeFile(path.join(podDir, 'tunnel-token'), tunnelToken, {mode: 0o600}),
    writeFile(path.join(podDir, 'proxy-ca.crt'), proxyCa),
  ])
  const args = [
    ...['tower', 'agent', ...kept],
    `--token-file=${path.join(podDir, 'tunnel-token')}`,
    `--kubernetes-service=${new URL(options.memberServerUrl).host}`,
    `--service-account-dir=${serviceAccountDir}`,
    `--proxy-ca=${path.join(podDir, 'proxy-ca.crt')}`,
    `--metrics-address=127.0.0.1:${String(options.metricsPort)}`,
  ]
  options.say(
    `the agent Deployment is on the member: its pod runs here as ksctl's agent, with a token of service account ${namespace}/${serviceAccount} from TokenRequest and the member's CA in ${displayPath(serviceAccountDir)}`,
  )
  options.say(`$ ksctl ${displayArgs(args)}`)
  const agent = startKsctlProcess('tower agent', args, path.join(options.dir, 'tower-agent.log'))
  await waitUntilReady(agent, `http://127.0.0.1:${String(options.metricsPort)}/readyz`, undefined)
  await member.config.makeApiClient(AppsV1Api).patchNamespacedDeploymentStatus(
    {
      name: AGENT_DEPLOYMENT_NAME,
      namespace,
      body: {
        status: {
          replicas: 1,
          readyReplicas: 1,
          availableReplicas: 1,
          updatedReplicas: 1,
          conditions: [{type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable'}],
        },
      },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  )
  return agent
}

interface KubeconfigDocument {
  clusters: {name: string; cluster: Record<string, unknown>}[]
  users: {name: string; user: Record<string, unknown>}[]
  contexts: {name: string; context: {cluster: string; user: string}}[]
  'current-context'?: string
}

/**
 * The admin kubeconfig plus context `member-via-tower`: the kubeconfig the tower proxy issued into the Cluster,
 * its server the proxy's port for the member (what Service mc-NAME's ClusterIP stands for; its certificate names
 * 127.0.0.1), verified against the proxy CA it carries.
 */
export function withViaTowerContext(adminYaml: string, issuedYaml: string, port: number): string {
  const admin = load(adminYaml) as KubeconfigDocument
  const issued = load(issuedYaml) as KubeconfigDocument
  const context =
    issued.contexts.find((entry) => entry.name === issued['current-context']) ?? issued.contexts[0]
  const cluster = issued.clusters.find((entry) => entry.name === context?.context.cluster)
  const user = issued.users.find((entry) => entry.name === context?.context.user)
  if (cluster === undefined || user === undefined) {
    throw new Error('internal error: the issued kubeconfig has no current context with its cluster and user')
  }
  return dump({
    ...admin,
    clusters: [
      ...admin.clusters,
      {name: VIA_TOWER_CONTEXT, cluster: {...cluster.cluster, server: `https://127.0.0.1:${String(port)}`}},
    ],
    users: [...admin.users, {name: VIA_TOWER_CONTEXT, user: user.user}],
    contexts: [
      ...admin.contexts,
      {name: VIA_TOWER_CONTEXT, context: {cluster: VIA_TOWER_CONTEXT, user: VIA_TOWER_CONTEXT}},
    ],
  })
}

/** On the way out (synchronous): DIR if the playground created it, else everything in it (it was empty). */
export function removeWhatWasMade(dir: string, createdDir: boolean): void {
  if (createdDir) {
    rmSync(dir, {recursive: true, force: true, maxRetries: 3})
    return
  }
  for (const entry of readdirSyncQuietly(dir)) {
    rmSync(path.join(dir, entry), {recursive: true, force: true, maxRetries: 3})
  }
}

function readdirSyncQuietly(dir: string): string[] {
  try {
    return readdirSync(dir)
  } catch {
    return []
  }
}

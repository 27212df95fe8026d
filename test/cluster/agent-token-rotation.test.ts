import assert from 'node:assert/strict'
import {writeFile} from 'node:fs/promises'
import https from 'node:https'
import path from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {execa, type ResultPromise} from 'execa'
import {load} from 'js-yaml'
import WebSocket from 'ws'

import type {AgentTokenRotateResult} from '../../src/agent-token/rotate.js'
import type {AgentTokenList} from '../../src/agent-token/list.js'
import {buildImage} from '../../image/build.js'
import {unpackCached, type UnpackedImage} from '../../image/unpack.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import {AGENT_TOKENS_SECRET} from '../../src/kubesphere/agent-token-secret.js'
import type {KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import type {FixtureName} from '../../src/kubesphere-standin/fixtures.js'
import {SUBPROTOCOL} from '../../src/tunnel/index.js'
import {clusterHeader, connectPath} from '../../src/tower/shared/agent-link.js'
import {until} from '../helpers/ksctl-running.js'
import type {RunningPod} from '../helpers/pod-runner.js'
import {tempDir} from '../helpers/temp-dir.js'
import {freePort} from '../testbed/http.js'
import {adminApis, createCluster, resetCluster} from '../testbed/seed.js'
import {run, snapshot} from './cluster-state.js'
import {testBed} from './hooks.js'
import {pointTowerServiceAt, routeClusterService, runAppliedAgent} from './ksctl-runtime-parts.js'
import {RunningRuntime, startKsctlRuntime} from './running-runtime.js'

const editions: {edition: string; host: FixtureName; member: FixtureName}[] = [
  {edition: '3.4', host: 'ks34-host', member: 'ks34-none'},
  {edition: '4.1', host: 'ks41-host', member: 'plain'},
]

interface IssuedKubeconfig {
  clusters: {cluster: {server: string; 'certificate-authority-data': string}}[]
  users: {user: {'client-certificate-data': string; 'client-key-data': string}}[]
}

/**
 * Requests through the tunnel, one after another on a few keep-alive connections, as the issued kubeconfig's
 * client: reads of the namespace's ConfigMaps and, every tenth request, a new ConfigMap (which the watch then sees).
 * Each request's outcome is counted; a failure keeps its reason.
 */
class RequestStream {
  readonly failures: string[] = []
  succeeded = 0
  created = 0
  private running = true
  private readonly loops: Promise<void>[]
  private readonly agent: https.Agent
  private readonly server: URL

  constructor(
    kubeconfig: IssuedKubeconfig,
    concurrency: number,
    private readonly prefix: string,
  ) {
    const cluster = kubeconfig.clusters[0]?.cluster
    const user = kubeconfig.users[0]?.user
    assert.ok(cluster !== undefined && user !== undefined)
    this.server = new URL(cluster.server)
    this.agent = new https.Agent({
      keepAlive: true,
      ca: Buffer.from(cluster['certificate-authority-data'], 'base64'),
      cert: Buffer.from(user['client-certificate-data'], 'base64'),
      key: Buffer.from(user['client-key-data'], 'base64'),
    })
    this.loops = Array.from({length: concurrency}, (_, loop) => this.loop(loop))
  }

  async stop(): Promise<void> {
    this.running = false
    await Promise.all(this.loops)
    this.agent.destroy()
  }

  private async loop(loop: number): Promise<void> {
    for (let request = 0; this.running; request++) {
      const create = request % 10 === 9
      const name = `${this.prefix}-${String(loop)}-${String(request)}`
      try {
        const status = await this.send(
          create ? 'POST' : 'GET',
          '/api/v1/namespaces/default/configmaps',
          create
            ? {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name}, data: {at: String(Date.now())}}
            : undefined,
        )
        if (status >= 200 && status < 300) {
          this.succeeded++
          if (create) this.created++
        } else {
          this.failures.push(`${create ? 'POST' : 'GET'} answered ${String(status)}`)
          await delay(100)
        }
      } catch (error) {
        this.failures.push(error instanceof Error ? error.message : String(error))
        // A request that fails at once must not spin the loop, starving the test's own timers.
        await delay(100)
      }
    }
  }

  private send(method: string, requestPath: string, body?: object): Promise<number> {
    const text = body === undefined ? undefined : JSON.stringify(body)
    return new Promise((resolve, reject) => {
      const request = https.request(
        {
          agent: this.agent,
          host: this.server.hostname,
          port: this.server.port,
          method,
          path: requestPath,
          headers: text === undefined ? {} : {'content-type': 'application/json'},
          timeout: 20_000,
        },
        (response) => {
          response.resume()
          response.once('end', () => resolve(response.statusCode ?? 0))
          response.once('error', reject)
        },
      )
      request.once('timeout', () => request.destroy(new Error('no answer in 20 s')))
      request.once('error', reject)
      request.end(text)
    })
  }
}

/** The answer of ksctl's proxy to an agent upgrade with `token`: the HTTP status of its refusal, or 101. */
function upgradeStatus(listenPort: number, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`wss://127.0.0.1:${String(listenPort)}${connectPath}`, SUBPROTOCOL, {
      headers: {authorization: `Bearer ${token}`, [clusterHeader]: 'member1'},
      // What is tested is the token; the proxy's certificate is tested elsewhere.
      rejectUnauthorized: false,
    })
    socket.once('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0)
      socket.terminate()
    })
    socket.once('open', () => {
      resolve(101)
      socket.terminate()
    })
    socket.once('error', reject)
  })
}

describe("agent token rotation: ksctl's proxy and two agents of a member move to a new token under load", function () {
  this.timeout(400_000)
  let image: UnpackedImage

  before(async function () {
    this.timeout(600_000)
    image = await unpackCached((await buildImage()).archive)
  })

  for (const {edition, host, member} of editions) {
    describe(`KubeSphere ${edition}`, () => {
      const running = new RunningRuntime()
      const agents: RunningPod[] = []
      let watch: ResultPromise | undefined
      let stream: RequestStream | undefined

      afterEach(async () => {
        await stream?.stop()
        stream = undefined
        watch?.kill('SIGKILL')
        await watch?.catch(() => undefined)
        watch = undefined
        for (const agent of agents.splice(0)) await agent.stop(5)
        await running.stop()
      })

      it('no request fails, kubectl get --watch carries on, and afterwards the old token is refused', async () => {
        const kubeconfig = testBed().kubeconfigPath
        const {listenPort, clients} = await startKsctlRuntime(running, {host, member, scheme: 'https'})
        const proxyOutput = running.proxy?.output ?? (() => '')

        // The one-machine join with ksctl's agent, two replicas; the test plays their kubelet.
        const join = run([
          ...['member', 'join', 'member1', '--host-context', 'host', '--member-context', 'member'],
          ...['--runtime', 'ksctl', '--replicas', '2', '--apply', '--wait', '--timeout', '120s'],
        ])
        const [first, undoRoute] = await Promise.all([
          runAppliedAgent({image, metricsPort: await freePort(), abandon: join, volumeSyncMs: 500}),
          routeClusterService('member1'),
        ])
        running.cleanups.push(undoRoute)
        assert.ok(first !== undefined)
        agents.push(first)
        const second = await runAppliedAgent({image, metricsPort: await freePort(), volumeSyncMs: 500})
        assert.ok(second !== undefined)
        agents.push(second)
        const joined = await join
        assert.equal(joined.exitCode, 0, `${joined.stderr}\n${first.output()}\n${proxyOutput()}`)
        await Promise.all(agents.map((agent) => agent.ready(60_000)))

        const hostClient = clients.forContext('host')
        const before = await hostClient.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
        const oldToken = before?.spec?.connection?.token ?? ''
        assert.match(oldToken, /^[0-9a-f]{64}$/)
        const issuedText = Buffer.from(before?.spec?.connection?.kubeconfig ?? '', 'base64').toString('utf8')
        const issuedFile = path.join(tempDir('ksctl-rotation-'), 'member1.kubeconfig')
        await writeFile(issuedFile, issuedText, {mode: 0o600})

        // The load: a watch with kubectl and a stream of reads and writes, all through the tunnel.
        let watched = ''
        watch = execa(
          '/usr/bin/kubectl',
          ['--kubeconfig', issuedFile, 'get', 'configmaps', '-n', 'default', '--watch', '-o', 'name'],
          {reject: false, stdin: 'ignore', buffer: false},
        )
        watch.stdout?.on('data', (chunk: Buffer) => (watched += chunk.toString()))
        let watchErrors = ''
        watch.stderr?.on('data', (chunk: Buffer) => (watchErrors += chunk.toString()))
        let watchEnded = false
        void watch.finally(() => (watchEnded = true))
        // Names of this run's own: the member's default namespace outlives a reset.
        const names = `rotation-${String(Date.now())}`
        await adminApis(kubeconfig, 'member').core.createNamespacedConfigMap({
          namespace: 'default',
          body: {metadata: {name: `${names}-before`}},
        })
        await until(() => watched.includes(`configmap/${names}-before`), 'the watch to list', {
          timeoutMs: 30_000,
          output: () => watchErrors,
        })
        const requests = new RequestStream(load(issuedText) as IssuedKubeconfig, 4, names)
        stream = requests
        await until(() => requests.created >= 2, 'the request stream to create ConfigMaps', {
          timeoutMs: 30_000,
        })

        const rotated = await run([
          'agent-token',
          'rotate',
          'member1',
          '--context',
          'host',
          '--timeout',
          '180s',
          '--json',
        ])
        assert.equal(rotated.exitCode, 0, `${rotated.stderr}\n${proxyOutput()}\n${first.output()}`)
        const result = JSON.parse(rotated.stdout) as AgentTokenRotateResult
        assert.equal(result.state, 'rotated')

        // Load goes on after the rotation: the watch sees a ConfigMap made now, through the agents' new sessions.
        const createdBefore = requests.created
        await until(() => requests.created >= createdBefore + 2, 'the request stream after the rotation', {
          timeoutMs: 30_000,
        })
        await adminApis(kubeconfig, 'member').core.createNamespacedConfigMap({
          namespace: 'default',
          body: {metadata: {name: `${names}-after`}},
        })
        await until(
          () => watched.includes(`configmap/${names}-after`),
          'the watch to see a ConfigMap made after the rotation',
          {
            timeoutMs: 30_000,
          },
        )
        await requests.stop()
        assert.deepEqual(
          requests.failures,
          [],
          `${String(requests.failures.length)} of ${String(requests.succeeded + requests.failures.length)} requests failed`,
        )
        assert.ok(requests.succeeded > 20, `only ${String(requests.succeeded)} requests went through`)
        assert.equal(watchEnded, false, 'kubectl get --watch is still running')

        // The Cluster holds the new token, the old one is refused and the new one let in.
        const after = await hostClient.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
        const newToken = after?.spec?.connection?.token ?? ''
        assert.match(newToken, /^[0-9a-f]{64}$/)
        assert.notEqual(newToken, oldToken)
        assert.equal(await upgradeStatus(listenPort, oldToken), 401)
        assert.equal(await upgradeStatus(listenPort, newToken), 101)
        const memberSecret = await clients
          .forContext('member')
          .findSecret('kubesphere-system', 'ksctl-tower-agent-token')
        assert.equal(memberSecret?.data.token, newToken)
        // Both agents handed over: neither restarted, both are ready, each said so.
        for (const agent of agents) {
          assert.equal(agent.restartCount(), 0, agent.output())
          await agent.ready(10_000)
          assert.match(agent.output(), /handed the tunnel over to a new token/)
        }
        const list = JSON.parse(
          (await run(['agent-token', 'list', '--context', 'host', '--json'])).stdout,
        ) as AgentTokenList
        assert.deepEqual(
          list.clusters.map((row) => [row.cluster, row.phase]),
          [['member1', 'current']],
        )
        assert.ok(list.clusters[0]?.issuedAt !== undefined)
        const record = await hostClient.findSecret('kubesphere-system', AGENT_TOKENS_SECRET)
        assert.ok(record !== undefined)

        // No token in anything the rotation printed or logged.
        const outputs: [string, string][] = [
          ['agent-token rotate', rotated.stdout + rotated.stderr],
          ['the proxy', proxyOutput()],
          ...agents.map((agent, index): [string, string] => [`agent ${String(index)}`, agent.output()]),
        ]
        for (const [what, output] of outputs) {
          for (const token of [oldToken, newToken]) {
            assert.ok(!output.includes(token), `a token in the output of ${what}`)
            assert.ok(!output.includes(Buffer.from(token).toString('base64')), `a base64 token in ${what}`)
          }
        }
      })
    })
  }
})

describe('agent-token rotate: what it refuses, and its dry run', function () {
  this.timeout(60_000)

  /** A proxy Cluster as Tower initialized it, with a token, on a 4.1 host. */
  async function hostWithProxyCluster(): Promise<string> {
    const kubeconfig = testBed().kubeconfigPath
    await resetCluster(kubeconfig, 'host', 'ks41-host', {proxyPublishAddress: 'https://127.0.0.1:30721'})
    const token = 'f'.repeat(64)
    await createCluster(adminApis(kubeconfig, 'host'), 'member1', {
      joinFederation: true,
      connection: {type: 'proxy', token},
    })
    return token
  }

  it("refuses on a host that runs Tower's proxy, naming the next step, and changes nothing", async () => {
    const token = await hostWithProxyCluster()
    const before = await snapshot('host')
    const outcome = await run(['agent-token', 'rotate', 'member1', '--context', 'host'])
    assert.equal(outcome.exitCode, 1, outcome.stderr)
    assert.match(
      outcome.stderr,
      /runs KubeSphere's Tower proxy \(service kubesphere-system\/tower selects app=tower/,
    )
    assert.match(outcome.stderr, /ksctl proxy install --context host/)
    assert.ok(!`${outcome.stdout}${outcome.stderr}`.includes(token))
    assert.deepEqual(await snapshot('host'), before)
  })

  it('refuses a cluster that is not there, or connects directly, and changes nothing', async () => {
    await hostWithProxyCluster()
    await pointTowerServiceAt('ksctl')
    const before = await snapshot('host')
    const missing = await run(['agent-token', 'rotate', 'member2', '--context', 'host'])
    assert.equal(missing.exitCode, 1, missing.stderr)
    assert.match(missing.stderr, /cluster member2 is not on the host of context "host": nothing was changed/)
    const direct = await run(['agent-token', 'rotate', 'host', '--context', 'host'])
    assert.equal(direct.exitCode, 1, direct.stderr)
    assert.match(direct.stderr, /cluster host does not connect through an agent .*nothing was changed/)
    const badLifetime = await run([
      'agent-token',
      'rotate',
      'member1',
      '--context',
      'host',
      '--lifetime',
      '1m',
    ])
    assert.equal(badLifetime.exitCode, 2, badLifetime.stderr)
    assert.match(badLifetime.stderr, /--lifetime must be at least 10m/)
    assert.deepEqual(await snapshot('host'), before)
  })

  it('shows its changes in a dry run, the new token as a fingerprint, and writes nothing', async () => {
    const token = await hostWithProxyCluster()
    await pointTowerServiceAt('ksctl')
    const before = await snapshot('host')
    const dry = await run(['agent-token', 'rotate', 'member1', '--context', 'host', '--dry-run'])
    assert.equal(dry.exitCode, 0, dry.stderr)
    assert.match(dry.stdout, /ask for a new agent token of cluster member1/)
    assert.match(dry.stdout, /ksctl\.io\/agent-token-secret-name: ksctl-agent-tokens/)
    assert.doesNotMatch(dry.stdout, /[0-9a-f]{64}/, 'no token, old or new, in the diff')
    assert.ok(!dry.stdout.includes(token))
    assert.deepEqual(await snapshot('host'), before)
  })
})

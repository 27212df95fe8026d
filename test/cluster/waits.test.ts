import assert from 'node:assert/strict'
import {once} from 'node:events'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createConnection, createServer, type AddressInfo, type Server, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {execa} from 'execa'
import {dump, load} from 'js-yaml'

import type {MemberJoinOutput} from '../../commands/member/join.js'
import type {ErrorJson} from '../../src/cli/base-command.js'
import type {KubeSphereInfo} from '../../src/kubesphere/detect.js'
import {ksctl} from '../helpers/ksctl-process.js'
import {until} from '../helpers/ksctl-running.js'
import {KubeSphereStandIn} from '../helpers/kubesphere-standin.js'
import {resetCluster} from '../testbed/seed.js'
import {testBed} from './hooks.js'

const runJs = path.resolve(import.meta.dirname, '..', '..', 'bin', 'run.js')

/** The built CLI as a user runs it, no terminal, its stderr readable while it runs, to be signalled. */
function start(args: string[]) {
  const child = execa(process.execPath, [runJs, ...args], {
    reject: false,
    stdin: 'ignore',
    env: {NO_COLOR: '1'},
  })
  let stderr = ''
  let running = true
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  void child.finally(() => (running = false))
  return {process: child, stderr: () => stderr, running: () => running}
}

describe('interrupted waits, real apiservers', function () {
  this.timeout(120_000)
  let standIn: KubeSphereStandIn | undefined

  afterEach(async () => {
    await standIn?.stop()
    standIn = undefined
  })

  it('member join --wait: SIGINT reports what changed and the command to continue (exit 130); that command finishes', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-none')
    standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member', {
      agentConnects: false,
    }).start()
    const args = [
      'member',
      'join',
      'member1',
      '--host-context',
      'host',
      '--member-context',
      'member',
      '--apply',
      '--wait',
    ]
    const command = [...args, '--kubeconfig', testBed().kubeconfigPath]
    const interruptInWait = async () => {
      const join = start(command)
      await until(() => join.stderr().includes('waiting for AgentAvailable'), 'the wait for the agent', {
        output: join.stderr,
      })
      join.process.kill('SIGINT')
      return {...(await join.process), stderr: join.stderr()}
    }

    const first = await interruptInWait()
    assert.equal(first.exitCode, 130, first.stderr)
    assert.match(
      first.stderr,
      /^error: interrupted by SIGINT while waiting for cluster "member1" to become Ready \(waited \d+s of 15m\)$/m,
    )
    assert.match(
      first.stderr,
      /^ {2}- updated clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer in context "member"$/m,
    )
    assert.match(first.stderr, /^ {2}- patched clusters\.cluster\.kubesphere\.io member1 in context "host"$/m)
    assert.match(
      first.stderr,
      /^ {2}- patched deployments kubesphere-system\/cluster-agent in context "member"$/m,
    )
    const resume = /to continue, run the same command again: (ksctl .*)$/m.exec(first.stderr)?.[1]
    assert.equal(resume, `ksctl ${command.join(' ')}`)

    // Interrupted again in the same place: the re-run's writes (server-side applies) changed nothing.
    const second = await interruptInWait()
    assert.equal(second.exitCode, 130, second.stderr)
    assert.match(second.stderr, /^nothing was changed$/m)

    await standIn.stop()
    standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member').start()
    const finished = await ksctl([...command, '--json'])
    assert.equal(finished.exitCode, 0, finished.stderr)
    assert.equal((JSON.parse(finished.stdout) as MemberJoinOutput).ready, true)
  })

  it('host init --wait: SIGTERM in the wait for the installer reports the same way; the same command finishes', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-none')
    const command = ['host', 'init', '--context', 'host', '--wait', '--kubeconfig', testBed().kubeconfigPath]
    const init = start(command)
    await until(() => init.stderr().includes('waiting for ks-installer'), 'the wait for the installer', {
      output: init.stderr,
    })
    init.process.kill('SIGTERM')
    const {exitCode} = await init.process
    assert.equal(exitCode, 130, init.stderr())
    assert.match(
      init.stderr(),
      /^error: interrupted by SIGTERM while waiting for ks-installer to enable multicluster \(waited \d+s of 20m\)$/m,
    )
    assert.match(
      init.stderr(),
      /^ {2}- updated clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer in context "host"$/m,
    )
    assert.match(
      init.stderr(),
      /to continue, run the same command again: ksctl host init --context host --wait --kubeconfig /,
    )

    standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', undefined).start()
    const finished = await ksctl(command)
    assert.equal(finished.exitCode, 0, finished.stderr)
    assert.match(finished.stderr, /^multicluster: enabled$/m)
  })

  it('member join --wait without --apply: the manifest piped into kubectl apply is applied while ksctl waits', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-none')
    standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member').start()
    const kubeconfig = testBed().kubeconfigPath
    const pipeline = await execa(
      'bash',
      [
        '-o',
        'pipefail',
        '-c',
        `"${process.execPath}" "${runJs}" member join member1 --host-context host --member-context member --wait ` +
          `--timeout 60s --kubeconfig "${kubeconfig}" | kubectl --kubeconfig "${kubeconfig}" --context member apply -f -`,
      ],
      {reject: false, stdin: 'ignore', env: {NO_COLOR: '1'}},
    )
    assert.equal(pipeline.exitCode, 0, pipeline.stderr)
    assert.match(pipeline.stdout, /^deployment\.apps\/cluster-agent (created|configured)$/m)
    assert.match(
      pipeline.stderr,
      /waiting for cluster "member1" to become Ready: apply the agent on the member now/,
    )
    assert.match(pipeline.stderr, /^host: cluster "member1" is Ready$/m)
  })
})

/**
 * A TCP relay in front of the host's real kube-apiserver that accepts connections and holds them, as a
 * hung API server or a black-holed route does: nothing reaches the server until `release()`, which connects
 * the held ones through, and every later one.
 */
class HoldingRelay {
  private readonly server: Server
  private readonly held: Socket[] = []
  private released = false
  /** Connections accepted so far, held or not. */
  accepted = 0
  url = ''

  constructor(private readonly target: URL) {
    this.server = createServer({pauseOnConnect: true}, (socket) => {
      socket.on('error', () => socket.destroy())
      this.accepted++
      if (this.released) this.connectThrough(socket)
      else this.held.push(socket)
    })
  }

  async start(): Promise<this> {
    this.server.listen(0, '127.0.0.1')
    await once(this.server, 'listening')
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`
    return this
  }

  release(): void {
    this.released = true
    for (const socket of this.held) if (!socket.destroyed) this.connectThrough(socket)
  }

  private connectThrough(socket: Socket): void {
    const upstream = createConnection({host: this.target.hostname, port: Number(this.target.port)})
    upstream.on('error', () => socket.destroy())
    socket.on('close', () => upstream.destroy())
    socket.pipe(upstream).pipe(socket)
    socket.resume()
  }

  async stop(): Promise<void> {
    for (const socket of this.held) socket.destroy()
    this.server.close()
    await once(this.server, 'close')
  }
}

describe('--timeout against a real kube-apiserver behind a relay that holds connections', function () {
  this.timeout(60_000)
  let dir: string
  let relay: HoldingRelay
  let kubeconfig: string

  before(async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    relay = await new HoldingRelay(new URL(testBed().clusters.host.url)).start()
    // The host context's cluster and user, reached through the relay: context "held".
    const config = load(readFileSync(testBed().kubeconfigPath, 'utf8')) as {
      clusters: {name: string; cluster: {server: string}}[]
      contexts: {name: string; context: {cluster: string; user: string}}[]
    }
    const host = config.clusters.find((cluster) => cluster.name === 'host')
    assert.ok(host)
    config.clusters.push({name: 'held', cluster: {...host.cluster, server: relay.url}})
    config.contexts.push({name: 'held', context: {cluster: 'held', user: 'host-admin'}})
    dir = mkdtempSync(path.join(tmpdir(), 'ksctl-held-'))
    kubeconfig = path.join(dir, 'kubeconfig')
    writeFileSync(kubeconfig, dump(config))
  })

  after(async () => {
    await relay.stop()
    rmSync(dir, {recursive: true, force: true})
  })

  it("gives up after --timeout (not undici's 10 s connect time-out), naming context and server; 0 waits until it answers", async () => {
    const info = (timeout: string) => {
      const started = performance.now()
      const run = start([
        'info',
        '--context',
        'held',
        '--timeout',
        timeout,
        '--kubeconfig',
        kubeconfig,
        '--json',
      ])
      return {run, ended: run.process.then((outcome) => ({...outcome, tookMs: performance.now() - started}))}
    }
    const short = info('2s')
    const long = info('12s')
    const unlimited = info('0')
    await until(() => relay.accepted >= 3, 'the three commands to connect')

    const failure = (stdout: string) => (JSON.parse(stdout) as ErrorJson).error.message
    const shortOutcome = await short.ended
    assert.equal(shortOutcome.exitCode, 1)
    assert.match(
      failure(shortOutcome.stdout),
      new RegExp(`^the API server of context "held" at ${relay.url} did not answer within 2s`),
    )
    assert.ok(shortOutcome.tookMs < 8000, `took ${shortOutcome.tookMs} ms`)

    // Past undici's 10 s connect time-out: the 12 s limit is the one that applies, and 0 is still waiting.
    const longOutcome = await long.ended
    assert.equal(longOutcome.exitCode, 1)
    assert.match(failure(longOutcome.stdout), /did not answer within 12s/)
    assert.ok(longOutcome.tookMs >= 12_000, `took ${longOutcome.tookMs} ms`)
    assert.ok(unlimited.run.running(), 'with --timeout 0 it still waits')

    relay.release()
    const unlimitedOutcome = await unlimited.ended
    assert.equal(unlimitedOutcome.exitCode, 0, unlimitedOutcome.stderr)
    assert.equal((JSON.parse(unlimitedOutcome.stdout) as KubeSphereInfo).edition, '3.x')
  })
})

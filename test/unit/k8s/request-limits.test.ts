import assert from 'node:assert/strict'
import {once} from 'node:events'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {createServer as createHttpsServer, type Server as HttpsServer} from 'node:https'
import {createServer, type AddressInfo, type Server, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import Info from '../../../commands/info.js'
import {ClusterClient} from '../../../src/k8s/cluster-client.js'
import {KubeconfigSet} from '../../../src/k8s/kubeconfig.js'
import {LimitedKubeConfig, withRequestLimits} from '../../../src/k8s/request-limits.js'
import {kubeconfigYaml} from '../../helpers/fake-clusters.js'
import {runCommand} from '../../helpers/run-command.js'
import {loopbackPki} from '../../helpers/test-pki.js'

const TOKEN = 'request-limits-token-0123456789'

/** Resolves when `socket` closes, or rejects after `withinMs`: the close is the event the tests wait for. */
function closed(socket: Socket, withinMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the connection was still open after ${withinMs} ms`)),
      withinMs,
    )
    socket.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

describe('API requests obey --timeout, for connecting and for each request, and are aborted when it runs out', () => {
  let dir: string
  let kubeconfigPath: string
  let servers: (Server | HttpsServer)[]

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ksctl-limits-'))
    kubeconfigPath = join(dir, 'kubeconfig')
    servers = []
  })

  afterEach(async () => {
    for (const server of servers) {
      if ('closeAllConnections' in server) server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
    rmSync(dir, {recursive: true, force: true})
  })

  /** A kubeconfig whose context "stalled" points at `url`. */
  const pointAt = async (url: string) => {
    writeFileSync(
      kubeconfigPath,
      kubeconfigYaml({stalled: [url, TOKEN]}, (await loopbackPki()).ca.certPem, 'stalled'),
    )
  }
  const listen = async (server: Server | HttpsServer): Promise<string> => {
    servers.push(server)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  }
  const info = (...argv: string[]) => runCommand(Info, ['--kubeconfig', kubeconfigPath, ...argv])

  it('gives up on a server that accepts TCP and never completes TLS after --timeout, and closes the connection', async () => {
    const accepted: Socket[] = []
    const url = await listen(
      createServer((socket) => {
        socket.resume()
        accepted.push(socket)
      }),
    )
    await pointAt(url)
    const started = performance.now()
    const {stderr, exitCode} = await info('--timeout', '1s')
    const tookMs = performance.now() - started
    assert.equal(exitCode, 1, stderr)
    assert.match(stderr, new RegExp(`the API server of context "stalled" at ${url} did not answer within 1s`))
    assert.ok(tookMs > 900 && tookMs < 3000, `gave up after ${tookMs} ms`)
    assert.ok(accepted.length > 0)
    // undici's own connect time-out (10 s) would have closed it much later.
    await Promise.all(accepted.map((socket) => closed(socket, 1000)))
  })

  it('gives up on a server that takes the request and never answers after --timeout, and aborts the request', async () => {
    const pki = await loopbackPki()
    const received: Socket[] = []
    const url = await listen(
      createHttpsServer({cert: pki.server.certPem, key: pki.server.keyPem}, (request) => {
        received.push(request.socket)
      }),
    )
    await pointAt(url)
    const started = performance.now()
    const {stderr, exitCode} = await info('--timeout', '1s')
    const tookMs = performance.now() - started
    assert.equal(exitCode, 1, stderr)
    assert.match(stderr, new RegExp(`the API server of context "stalled" at ${url} did not answer within 1s`))
    assert.ok(tookMs > 900 && tookMs < 3000, `gave up after ${tookMs} ms`)
    assert.ok(received.length > 0)
    // A Promise.race without an abort would leave the request open until undici's 300 s headers time-out.
    await Promise.all(received.map((socket) => closed(socket, 1000)))
  })

  it('reads --timeout 0 as no time-out, as kubectl does', async () => {
    const pki = await loopbackPki()
    const url = await listen(
      createHttpsServer({cert: pki.server.certPem, key: pki.server.keyPem}, (_request, response) => {
        setTimeout(() => {
          response.writeHead(404, {'content-type': 'application/json'})
          response.end(JSON.stringify({kind: 'Status', code: 404, message: 'the server could not find it'}))
        }, 300)
      }),
    )
    await pointAt(url)
    const {stderr} = await info('--timeout', '0')
    assert.doesNotMatch(stderr, /did not answer/)
    assert.match(stderr, /not found in context "stalled"/)
  })

  it('arms no connect time-out for --timeout 0 (undici reads 0 as none; its own default is 10 s)', async () => {
    const pki = await loopbackPki()
    const url = await listen(
      createHttpsServer({cert: pki.server.certPem, key: pki.server.keyPem}, (_request, response) => {
        response.writeHead(200, {'content-type': 'application/json'})
        response.end(JSON.stringify({major: '1', minor: '35', gitVersion: 'v1.35.4'}))
      }),
    )
    await pointAt(url)
    const seen: unknown[] = []
    class Recording extends LimitedKubeConfig {
      override createDispatcherOptions(...args: Parameters<LimitedKubeConfig['createDispatcherOptions']>) {
        const options = super.createDispatcherOptions(...args)
        seen.push(options)
        return options
      }
    }
    const config = new Recording()
    config.loadFromOptions(KubeconfigSet.load({kubeconfig: kubeconfigPath}).forContext('stalled'))
    const client = new ClusterClient('stalled', config, 0)
    assert.equal((await client.version()).gitVersion, 'v1.35.4')
    assert.equal(seen.length, 1)
    const connect = (seen[0] as {connect: {timeout: number; signal: AbortSignal}}).connect
    assert.equal(connect.timeout, 0)
    assert.equal(connect.signal.aborted, false)
  })

  it('leaves client-node as it is outside a limited request', () => {
    const config = new LimitedKubeConfig()
    const plain = config.createDispatcherOptions(null, {})
    assert.deepEqual(plain, {type: 'none'})
    const limited = withRequestLimits({timeoutMs: 2000, signal: new AbortController().signal}, async () =>
      config.createDispatcherOptions(null, {}),
    )
    return limited.then((options) => {
      assert.equal(options.type, 'agent')
      assert.equal((options as {connect: {timeout: number}}).connect.timeout, 2000)
    })
  })
})

import assert from 'node:assert/strict'
import http from 'node:http'

import {WebSocket} from 'ws'

import {FailureLimiter} from '../../../../src/tower/proxy/auth.js'
import {AgentListener} from '../../../../src/tower/proxy/agent-listener.js'
import {TowerMetrics} from '../../../../src/tower/shared/metrics.js'
import {SUBPROTOCOL} from '../../../../src/tunnel/index.js'
import {CapturedLog, clusterToken, startProxy, until, type ProxyHarness} from '../harness.js'

/** One upgrade request to the listener, as an agent (or a guesser) sends it; the status it got. */
function attempt(port: number, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request(`http://127.0.0.1:${port}/connect`, {
      agent: false,
      headers: {connection: 'Upgrade', upgrade: 'websocket', ...headers},
    })
    request.on('response', (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode ?? 0))
    })
    request.on('error', reject)
    request.end()
  })
}

const guess = (token: string) => ({'x-ksctl-cluster': 'member', authorization: `Bearer ${token}`})

/** An agent with the right token: true when its WebSocket opened (a session), the HTTP status it got otherwise. */
function agentConnects(port: number): Promise<true | number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/connect`, SUBPROTOCOL, {
      headers: guess(clusterToken),
    })
    socket.once('open', () => {
      socket.close()
      resolve(true)
    })
    socket.once('unexpected-response', (_request, response: http.IncomingMessage) => {
      response.resume()
      socket.on('error', () => undefined)
      socket.terminate()
      resolve(response.statusCode ?? 0)
    })
    socket.once('error', reject)
  })
}

describe('tower proxy: the agents’ listener and its failed-token limiter', function () {
  this.timeout(30_000)
  let log: CapturedLog
  let harness: ProxyHarness
  let listener: AgentListener
  let metrics: TowerMetrics

  beforeEach(async () => {
    log = new CapturedLog()
    harness = await startProxy(new CapturedLog())
    metrics = new TowerMetrics()
    listener = await AgentListener.start({
      address: {host: '127.0.0.1', port: 0},
      tls: undefined,
      registry: harness.registry,
      pool: harness.proxy.pool,
      log: log.logger(),
      metrics,
      // The defaults: 5 failures within a minute block the source for a minute.
      limiter: new FailureLimiter(),
    })
  })

  afterEach(async () => {
    await harness.proxy.pool.goAwayAll()
    await listener.close()
    await harness.proxy.stop()
    assert.ok(!log.text.includes(clusterToken))
  })

  it('lets an agent with the correct token in from an address that sent 1,000 wrong tokens', async () => {
    for (let sent = 0; sent < 1000; sent += 50) {
      await Promise.all(
        Array.from({length: 50}, (_, i) => attempt(listener.port, guess(`wrong-${sent + i}`))),
      )
    }
    assert.equal(await attempt(listener.port, guess('one-more-wrong')), 429)
    assert.equal(await agentConnects(listener.port), true)
    await until(() => harness.proxy.pool.count('member') === 1)
  })

  it('lets every agent behind one NAT in after five failures there, and still answers the failures 429', async () => {
    for (let i = 0; i < 5; i++) assert.equal(await attempt(listener.port, guess(`wrong-${i}`)), 401)
    assert.deepEqual(await Promise.all([agentConnects(listener.port), agentConnects(listener.port)]), [
      true,
      true,
    ])
    assert.equal(await attempt(listener.port, guess('wrong-again')), 429)
  })

  it('does not count an upgrade without a token as a failure', async () => {
    for (let i = 0; i < 10; i++)
      assert.equal(await attempt(listener.port, {'x-ksctl-cluster': 'member'}), 401)
    assert.equal(await attempt(listener.port, guess('wrong')), 401, 'not blocked by the tokenless upgrades')
    const text = await metrics.render()
    assert.match(text, /ksctl_tower_auth_failures_total\{endpoint="agent",reason="no_token"\} 10/)
    assert.match(text, /ksctl_tower_auth_failures_total\{endpoint="agent",reason="bad_credentials"\} 1\n/)
    assert.equal(log.lines.filter((line) => line.includes('rejected an agent')).length, 1)
  })

  it('limits what the failures of a blocked address cost: 429 with Retry-After, one warning for the block, none per attempt', async () => {
    for (let i = 0; i < 25; i++) await attempt(listener.port, guess(`wrong-${i}`))
    const warnings = log.lines.filter((line) => line.includes('"level":"warn"'))
    assert.equal(warnings.filter((line) => line.includes('rejected an agent')).length, 5)
    assert.equal(warnings.filter((line) => line.includes('too many failed agent authentications')).length, 1)
    assert.match(await metrics.render(), /reason="rate_limited"\} 20/)
    const retryAfter = await new Promise<string | undefined>((resolve, reject) => {
      http
        .request(`http://127.0.0.1:${listener.port}/connect`, {
          agent: false,
          headers: {connection: 'Upgrade', upgrade: 'websocket', ...guess('wrong-last')},
        })
        .on('response', (response) => {
          response.resume()
          resolve(response.headers['retry-after'])
        })
        .on('error', reject)
        .end()
    })
    assert.ok(Number(retryAfter) > 0 && Number(retryAfter) <= 60, `Retry-After ${String(retryAfter)}`)
  })
})

import assert from 'node:assert/strict'
import http from 'node:http'
import https from 'node:https'
import {writeFile} from 'node:fs/promises'
import type {AddressInfo} from 'node:net'
import {once} from 'node:events'
import path from 'node:path'

import {WebSocket, WebSocketServer} from 'ws'

import {createCertificateAuthority} from '../../../src/pki/certificates.js'
import {FailureLimiter} from '../../../src/tower/proxy/auth.js'
import {credentialsTtlMs} from '../../../src/tower/agent/member-apiserver.js'
import {TowerMetrics} from '../../../src/tower/shared/metrics.js'
import {AgentListener} from '../../../src/tower/proxy/agent-listener.js'
import {WireErrorCode} from '../../../src/tunnel/index.js'
import {loopbackPki} from '../../helpers/test-pki.js'
import {freePort} from '../../testbed/http.js'
import {
  CapturedLog,
  clientCredentials,
  clusterToken,
  frontEndRequest,
  memberSetup,
  saToken,
  startAgent,
  startProxy,
  startUpstream,
  until,
  type Echo,
  type ProxyHarness,
} from './harness.js'

async function scrape(port: number | undefined): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`)
  return response.text()
}

describe('tower proxy and agent, in process', function () {
  this.timeout(30_000)
  let log: CapturedLog
  let harness: ProxyHarness
  let member: Awaited<ReturnType<typeof memberSetup>>
  let credentials: Awaited<ReturnType<typeof clientCredentials>>

  beforeEach(async () => {
    log = new CapturedLog()
    harness = await startProxy(log, [{name: 'member', token: clusterToken, kubernetesPort: await freePort()}])
    member = await memberSetup(log, harness)
    credentials = await clientCredentials(harness.ca)
  })

  afterEach(async () => {
    await Promise.all(member.agents.map((agent) => agent.stop()))
    await harness.proxy.stop()
    await member.upstream.close()
    for (const secret of [clusterToken, saToken, 'client-secret-token']) {
      assert.ok(!log.text.includes(secret), `a log line holds ${secret}`)
    }
  })

  const url = (suffix: string): string =>
    `https://127.0.0.1:${harness.proxy.frontEndPort}/clusters/member${suffix}`

  it('routes by path, strips the client Authorization and adds the member credential, re-read within a second', async () => {
    member.newAgent()
    await until(() => member.agents.every((agent) => agent.ready))
    const first = await frontEndRequest(url('/api/v1/namespaces?limit=1'), credentials, {
      method: 'POST',
      headers: {authorization: 'Bearer client-secret-token'},
      body: 'x'.repeat(300_000),
    })
    assert.equal(first.status, 200)
    const echo = JSON.parse(first.body) as Echo
    assert.equal(echo.path, '/api/v1/namespaces?limit=1')
    assert.equal(echo.headers.authorization, `Bearer ${saToken}`)
    assert.equal(echo.bodyBytes, 300_000)
    await writeFile(path.join(member.saDir, 'token'), `${saToken}-rotated`)
    // The agent reuses what it read for a second: a rotated token is in use within that.
    await new Promise((resolve) => setTimeout(resolve, credentialsTtlMs + 100))
    const second = JSON.parse((await frontEndRequest(url('/api'), credentials)).body) as Echo
    assert.equal(second.headers.authorization, `Bearer ${saToken}-rotated`)
    const unknown = await frontEndRequest(
      `https://127.0.0.1:${harness.proxy.frontEndPort}/clusters/nope/api`,
      credentials,
    )
    assert.equal(unknown.status, 404)
  })

  it('serves the Tower-compatible per-cluster HTTPS port too', async () => {
    member.newAgent()
    await until(() => member.agents[0]?.ready === true)
    const port = harness.proxy.clusterPorts('member').kubernetes
    assert.ok(port !== undefined && port > 0)
    const response = await frontEndRequest(`https://127.0.0.1:${port}/version`, credentials)
    assert.equal((JSON.parse(response.body) as Echo).path, '/version')
  })

  it('carries one request after another on a kept stream, and releases it at once when the agent stops', async () => {
    const agent = member.newAgent()
    await until(() => agent.ready)
    for (let i = 0; i < 3; i++) assert.equal((await frontEndRequest(url('/api'), credentials)).status, 200)
    assert.match(
      await scrape(harness.proxy.metricsPort),
      /ksctl_tower_stream_open_seconds_count\{cluster="member",outcome="accepted"\} 1\n/,
    )
    assert.equal(harness.proxy.pool.streamsOpen('member'), 1)
    const stopping = performance.now()
    await agent.stop()
    // The grace period is 2 s: an idle kept stream must not hold the agent's shutdown that long.
    assert.ok(performance.now() - stopping < 1000, `stop took ${performance.now() - stopping} ms`)
  })

  it('answers a client without a good certificate with 401, and counts each kind', async () => {
    member.newAgent()
    const otherCa = await createCertificateAuthority({commonName: 'other', validityDays: 1})
    const expired = await clientCredentials(harness.ca, {
      notBefore: new Date(Date.now() - 3 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    })
    const foreign = await clientCredentials(otherCa)
    for (const creds of [{ca: credentials.ca}, {...foreign, ca: credentials.ca}, expired]) {
      const response = await frontEndRequest(url('/api'), creds)
      assert.equal(response.status, 401)
    }
    const metrics = await scrape(harness.proxy.metricsPort)
    for (const reason of [
      'no_client_certificate',
      'untrusted_client_certificate',
      'expired_client_certificate',
    ]) {
      assert.match(
        metrics,
        new RegExp(`ksctl_tower_auth_failures_total\\{endpoint="front_end",reason="${reason}"\\} 1`),
      )
    }
  })

  it('refuses a wrong token and an unknown cluster alike with 401, then answers the source’s failures with 429, never its correct token', async () => {
    const limited = new CapturedLog()
    const metrics = new TowerMetrics()
    const listener = await AgentListener.start({
      address: {host: '127.0.0.1', port: 0},
      tls: undefined,
      registry: harness.registry,
      pool: harness.proxy.pool,
      log: limited.logger(),
      metrics,
      limiter: new FailureLimiter({maxFailures: 3}),
    })
    const attempt = (name: string, token: string) =>
      new Promise<{status: number; body: string}>((resolve, reject) => {
        const request = http.request(`http://127.0.0.1:${listener.port}/connect`, {
          headers: {
            connection: 'Upgrade',
            upgrade: 'websocket',
            'x-ksctl-cluster': name,
            authorization: `Bearer ${token}`,
          },
        })
        request.on('response', (response) => {
          const chunks: Buffer[] = []
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('end', () =>
            resolve({status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString()}),
          )
        })
        request.on('error', reject)
        request.end()
      })
    const wrongToken = await attempt('member', `${clusterToken}x`)
    const unknownCluster = await attempt('nope', clusterToken)
    assert.deepEqual(wrongToken, {status: 401, body: 'unauthorized\n'})
    assert.deepEqual(unknownCluster, wrongToken)
    await attempt('member', 'x')
    const blocked = await attempt('member', 'y')
    assert.equal(blocked.status, 429)
    // Authenticated, then refused for offering no sub-protocol: the block is not for an agent with the token.
    assert.equal((await attempt('member', clusterToken)).status, 400)
    assert.match(
      await metrics.render(),
      /ksctl_tower_auth_failures_total\{endpoint="agent",reason="bad_credentials"\} 3/,
    )
    assert.match(await metrics.render(), /reason="rate_limited"\} 1/)
    await listener.close()
    assert.ok(!limited.text.includes(clusterToken))
  })

  it('refuses, before the upgrade, an agent offering only kubesphere-v1 or no sub-protocol: 400, no session, counted', async () => {
    const offer = (protocols: string[]) =>
      new Promise<{status: number; body: string}>((resolve, reject) => {
        const socket = new WebSocket(`ws://127.0.0.1:${harness.proxy.agentPort}/connect`, protocols, {
          headers: {'x-ksctl-cluster': 'member', authorization: `Bearer ${clusterToken}`},
        })
        socket.once('open', () => reject(new Error('the upgrade completed')))
        socket.once('unexpected-response', (_request, response: http.IncomingMessage) => {
          const chunks: Buffer[] = []
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('end', () => {
            socket.terminate()
            resolve({status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString()})
          })
        })
        // ws fails a handshake whose offer the server did not select: the server upgraded anyway.
        socket.once('error', (error) => reject(new Error(`the upgrade went on: ${error.message}`)))
      })
    const towerAgent = await offer(['kubesphere-v1'])
    assert.equal(towerAgent.status, 400)
    assert.match(
      towerAgent.body,
      /must offer the WebSocket sub-protocol ksctl-tunnel\.v1 \(offered: kubesphere-v1\)/,
    )
    const noOffer = await offer([])
    assert.equal(noOffer.status, 400)
    assert.match(noOffer.body, /\(offered: none\)/)
    assert.equal(harness.proxy.pool.count('member'), 0)
    assert.equal(log.lines.filter((line) => line.includes('"agent connected"')).length, 0)
    const metrics = await scrape(harness.proxy.metricsPort)
    assert.match(metrics, /ksctl_tower_agent_upgrades_refused_total\{reason="unsupported_subprotocol"\} 1/)
    assert.match(metrics, /ksctl_tower_agent_upgrades_refused_total\{reason="no_subprotocol"\} 1/)
    // The same token with the tunnel's sub-protocol is served.
    member.newAgent()
    await until(() => harness.proxy.pool.count('member') === 1)
  })

  it('refuses a destination the agent does not allow', async () => {
    member.newAgent()
    await until(() => member.agents[0]?.ready === true)
    await assert.rejects(harness.proxy.pool.openStream('member', 'metrics'), (error: {wireCode?: number}) => {
      assert.equal(error.wireCode, WireErrorCode.DestinationNotAllowed)
      return true
    })
  })

  it('sends a read again on a fresh stream when the destination closed the kept one under it, never a write', async () => {
    // A destination that drops every connection at its second request, as a server closing an idle
    // keep-alive connection does at the moment a request arrives.
    const answered: string[] = []
    const closing = http.createServer((request, response) => {
      const socket = request.socket as typeof request.socket & {served?: number}
      socket.served = (socket.served ?? 0) + 1
      if (socket.served > 1) {
        socket.destroy()
        return
      }
      answered.push(`${request.method ?? ''} ${request.url ?? ''}`)
      response.end('ok')
    })
    closing.listen(0, '127.0.0.1')
    await once(closing, 'listening')
    try {
      const allowed = new Map([['app', {host: '127.0.0.1', port: (closing.address() as AddressInfo).port}]])
      const agent = startAgent(log, harness.proxy.agentPort, {allowed})
      member.agents.push(agent)
      await until(() => agent.ready)
      assert.equal((await frontEndRequest(url('/destinations/app/first'), credentials)).status, 200)
      const read = await frontEndRequest(url('/destinations/app/second'), credentials)
      assert.equal(read.status, 200)
      const write = await frontEndRequest(url('/destinations/app/third'), credentials, {
        method: 'POST',
        body: 'x',
      })
      assert.equal(write.status, 502)
      assert.deepEqual(answered, ['GET /first', 'GET /second'])
    } finally {
      closing.closeAllConnections()
      closing.close()
    }
  })

  it('reaches an --allow destination by path, websocket included, and answers 403 for one not allowed', async () => {
    const seen: {path: string | undefined; authorization: string | undefined}[] = []
    const echo = new WebSocketServer({host: '127.0.0.1', port: 0})
    echo.on('connection', (socket, request) => {
      seen.push({path: request.url, authorization: request.headers.authorization})
      socket.on('message', (data: Buffer) => socket.send(`echo: ${data.toString()}`))
    })
    await once(echo, 'listening')
    const echoPort = (echo.address() as AddressInfo).port
    const upstream = await startUpstream()
    try {
      const allowed = new Map([
        ['wsecho', {host: '127.0.0.1', port: echoPort}],
        ['dashboard', {host: '127.0.0.1', port: upstream.port}],
      ])
      const agent = startAgent(log, harness.proxy.agentPort, {allowed})
      member.agents.push(agent)
      await until(() => agent.ready)

      const plain = await frontEndRequest(url('/destinations/dashboard/ui/index?tab=1'), credentials, {
        headers: {authorization: 'Bearer dashboard-user'},
      })
      assert.equal(plain.status, 200)
      const reply = JSON.parse(plain.body) as Echo
      assert.equal(reply.path, '/ui/index?tab=1')
      assert.equal(
        reply.headers.authorization,
        'Bearer dashboard-user',
        'not kubernetes: the client credential stays',
      )

      const socket = new WebSocket(url('/destinations/wsecho/chat').replace(/^https/, 'wss'), {
        ...credentials,
        headers: {authorization: 'Bearer dashboard-user'},
      })
      await once(socket, 'open')
      const answer = once(socket, 'message')
      socket.send('hello through the tunnel')
      assert.equal(String((await answer)[0]), 'echo: hello through the tunnel')
      socket.close()
      await once(socket, 'close')
      assert.deepEqual(seen, [{path: '/chat', authorization: 'Bearer dashboard-user'}])

      const refused = await frontEndRequest(url('/destinations/metrics/'), credentials)
      assert.equal(refused.status, 403)
      assert.match(
        refused.body,
        /does not allow destination metrics: start it with --allow metrics=HOST:PORT/,
      )
      const noCertificate = await frontEndRequest(url('/destinations/dashboard/'), {ca: credentials.ca})
      assert.equal(noCertificate.status, 401)
    } finally {
      echo.close()
      await upstream.close()
    }
  })

  it('aborts the member request when the client goes away mid-request, and keeps serving', async () => {
    const pki = await loopbackPki('tower-member')
    let upstreamClosed = 0
    const held = https.createServer(
      {cert: pki.server.certPem, key: pki.server.keyPem},
      (request, response) => {
        if (request.url === '/hold') {
          response.writeHead(200, {'content-type': 'application/json'})
          response.write('{')
          request.once('close', () => upstreamClosed++)
          return
        }
        response.end('{}')
      },
    )
    held.listen(0, '127.0.0.1')
    await once(held, 'listening')
    const address = {host: '127.0.0.1', port: (held.address() as AddressInfo).port}
    const agent = startAgent(log, harness.proxy.agentPort, {
      kubernetes: () => Promise.resolve({address, tls: {ca: pki.ca.certPem}, authorization: 'Bearer sa'}),
    })
    member.agents.push(agent)
    try {
      await until(() => agent.ready)
      const client = https.get(url('/hold'), {...credentials, agent: false})
      const [response] = (await once(client, 'response')) as [http.IncomingMessage]
      assert.equal(response.statusCode, 200)
      response.destroy()
      client.destroy()
      await until(() => upstreamClosed === 1)
      assert.equal((await frontEndRequest(url('/after'), credentials)).status, 200)
    } finally {
      held.closeAllConnections()
      held.close()
    }
  })

  it('lets a fast reader finish while a slow reader on the same agent is blocked', async () => {
    member.newAgent()
    await until(() => member.agents[0]?.ready === true)
    const slow = await new Promise<http.IncomingMessage>((resolve, reject) => {
      https.get(url('/big/67108864'), {agent: false, ...credentials}, resolve).on('error', reject)
    })
    slow.pause()
    const started = performance.now()
    for (let i = 0; i < 5; i++) assert.equal((await frontEndRequest(url('/api'), credentials)).status, 200)
    assert.ok(performance.now() - started < 5000)
    slow.destroy()
  })

  it('spreads streams over two agents; losing one fails only its streams', async () => {
    const [a, b] = [member.newAgent(), member.newAgent()]
    await until(() => a.ready && b.ready && harness.proxy.pool.count('member') === 2)
    const hold = () =>
      new Promise<http.IncomingMessage>((resolve, reject) => {
        https.get(url('/big/67108864'), {agent: false, ...credentials}, resolve).on('error', reject)
      })
    const held = [await hold(), await hold()]
    for (const response of held) response.pause()
    const perSession = harness.proxy.pool.candidates('member').map((session) => session.stats.streamsActive)
    assert.deepEqual(perSession, [1, 1])
    const outcomes = held.map(
      (response) =>
        new Promise<string>((resolve) => {
          response.on('error', () => resolve('broken'))
          response.on('close', () => resolve(response.complete ? 'complete' : 'broken'))
        }),
    )
    await a.stop()
    // One held response breaks (its agent left); the other is still streaming and can be read to the end.
    for (const response of held) response.resume()
    const results = await Promise.all(outcomes)
    assert.deepEqual(results.sort(), ['broken', 'complete'])
    for (let i = 0; i < 3; i++) assert.equal((await frontEndRequest(url('/api'), credentials)).status, 200)
  })

  it('fails requests fast with 502 while no agent is connected, and resumes by itself', async () => {
    const agent = member.newAgent()
    await until(() => agent.ready)
    await agent.stop()
    const started = performance.now()
    const during = await frontEndRequest(url('/api'), credentials)
    assert.equal(during.status, 502)
    assert.match(during.body, /no agent of cluster member is connected/)
    assert.ok(performance.now() - started < 1000)
    const again = member.newAgent()
    await until(() => again.ready)
    assert.equal((await frontEndRequest(url('/api'), credentials)).status, 200)
    const metrics = await scrape(harness.proxy.metricsPort)
    assert.match(metrics, /ksctl_tower_sessions\{cluster="member"\} 1/)
    assert.match(metrics, /ksctl_tower_stream_bytes_total\{cluster="member",direction="from_agent"\} \d+/)
  })
})

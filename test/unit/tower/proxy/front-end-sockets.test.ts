import assert from 'node:assert/strict'
import diagnosticsChannel from 'node:diagnostics_channel'
import http from 'node:http'
import https from 'node:https'
import {writeFile} from 'node:fs/promises'
import net from 'node:net'

import {freePort} from '../../../testbed/http.js'
import {
  CapturedLog,
  clientCredentials,
  clusterToken,
  memberSetup,
  startProxy,
  until,
  type ProxyHarness,
} from '../harness.js'

/**
 * Whether Nagle's algorithm is off on a socket. Node keeps the state it set in a private symbol, whichever way it
 * was set (a server's `noDelay` option sets it below JavaScript, an HTTP/2 session calls `setNoDelay()`); there
 * is no public getter. Reading the state, not timing a response, keeps the test free of delayed-ACK timing.
 */
function noDelayOf(socket: net.Socket): boolean {
  const symbol = Object.getOwnPropertySymbols(socket).find(
    (candidate) => candidate.description === 'kSetNoDelay',
  )
  assert.ok(symbol !== undefined, 'Node no longer keeps kSetNoDelay on a socket: update this test')
  return (socket as unknown as Record<symbol, unknown>)[symbol] === true
}

/** The sockets every server of this process accepts while the test runs (Node's `net.server.socket` channel). */
function recordAcceptedSockets(): {byPort: (port: number) => net.Socket[]; stop: () => void} {
  // The port is read at once: a closed socket no longer knows it.
  const accepted: {socket: net.Socket; port: number | undefined}[] = []
  const record = (message: unknown): void => {
    const {socket} = message as {socket: net.Socket}
    accepted.push({socket, port: socket.localPort})
  }
  diagnosticsChannel.subscribe('net.server.socket', record)
  return {
    byPort: (port) => accepted.filter((entry) => entry.port === port).map((entry) => entry.socket),
    stop: () => diagnosticsChannel.unsubscribe('net.server.socket', record),
  }
}

function get(url: string, options: https.RequestOptions = {}): Promise<number> {
  const send = url.startsWith('https:') ? https.request : http.request
  return new Promise((resolve, reject) => {
    send(url, {agent: false, ...options}, (response) => {
      response.resume()
      response.once('end', () => resolve(response.statusCode ?? 0))
    })
      .once('error', reject)
      .end()
  })
}

describe('tower proxy sockets', function () {
  this.timeout(30_000)
  let harness: ProxyHarness
  let member: Awaited<ReturnType<typeof memberSetup>>
  let recorder: ReturnType<typeof recordAcceptedSockets>

  afterEach(async () => {
    recorder.stop()
    await Promise.all(member.agents.map((agent) => agent.stop()))
    await harness.proxy.stop()
    await member.upstream.close()
  })

  it('turns Nagle off on every accepted socket: HTTP/1.1 front ends, the kubesphere port and the agent listener', async () => {
    recorder = recordAcceptedSockets()
    const log = new CapturedLog()
    const [kubernetesPort, kubespherePort] = [await freePort(), await freePort()]
    harness = await startProxy(log, [{name: 'member', token: clusterToken, kubernetesPort, kubespherePort}])
    member = await memberSetup(log, harness)
    member.newAgent()
    await until(() => member.agents.every((agent) => agent.ready))
    const credentials = await clientCredentials(harness.ca)
    // HTTP/1.1 only (no h2 in ALPN): the clients whose last response chunk waited for a delayed ACK.
    const http1 = {...credentials, ALPNProtocols: ['http/1.1']}
    const frontEnd = harness.proxy.frontEndPort
    assert.equal(await get(`https://127.0.0.1:${frontEnd}/clusters/member/api`, http1), 200)
    assert.equal(await get(`https://127.0.0.1:${kubernetesPort}/api`, http1), 200)
    // No agent serves kubesphere here: the answer does not matter, the accepted socket does.
    await get(`http://127.0.0.1:${kubespherePort}/`)

    for (const [what, port] of [
      ['path-routed front end', frontEnd],
      ['per-cluster kubernetes port', kubernetesPort],
      ['per-cluster kubesphere port', kubespherePort],
      ['agent listener', harness.proxy.agentPort],
    ] as const) {
      const sockets = recorder.byPort(port)
      assert.ok(sockets.length > 0, `no socket was accepted on the ${what}`)
      for (const socket of sockets) assert.ok(noDelayOf(socket), `Nagle is on at the ${what}`)
    }
  })

  it("opens the other clusters' ports when one cluster's port is taken, and that one once it is free", async () => {
    recorder = recordAcceptedSockets()
    const blocker = net.createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const taken = (blocker.address() as net.AddressInfo).port
    const free = await freePort()
    const log = new CapturedLog()
    harness = await startProxy(log, [
      {name: 'blocked', token: `${clusterToken}-b`, kubernetesPort: taken},
      {name: 'member', token: clusterToken, kubernetesPort: free},
    ])
    member = await memberSetup(log, harness)
    try {
      assert.equal(harness.proxy.clusterPorts('member').kubernetes, free)
      assert.equal(harness.proxy.clusterPorts('blocked').kubernetes, undefined)
      assert.match(
        log.text,
        /"cannot open a per-cluster port; trying again","cluster":"blocked","reason":"EADDRINUSE"/,
      )
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()))
    }
    await until(() => harness.proxy.clusterPorts('blocked').kubernetes === taken, 10_000)
  })

  it('leaves no per-cluster port open when it stops while a new cluster’s port is being opened', async () => {
    recorder = recordAcceptedSockets()
    const log = new CapturedLog()
    harness = await startProxy(log)
    member = await memberSetup(log, harness)
    const port = await freePort()
    await writeFile(
      harness.clustersFile,
      JSON.stringify([
        {name: 'member', token: clusterToken},
        {name: 'added', token: `${clusterToken}-added`, kubernetesPort: port},
      ]),
    )
    // The reload starts opening the new port; the proxy stops before that is done.
    await harness.registry.reload()
    await harness.proxy.stop()
    const probe = net.createServer()
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject)
      probe.listen(port, '127.0.0.1', resolve)
    })
    await new Promise<void>((resolve) => probe.close(() => resolve()))
  })
})

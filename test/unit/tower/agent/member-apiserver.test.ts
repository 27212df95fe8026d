import assert from 'node:assert/strict'
import {once} from 'node:events'
import type http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import net from 'node:net'

import {WebSocket, WebSocketServer} from 'ws'

import type {KubernetesCredentials} from '../../../../src/tower/agent/agent-dial.js'
import {cachedCredentials, MemberApiRelay} from '../../../../src/tower/agent/member-apiserver.js'
import {INITIAL_WINDOW_BYTES} from '../../../../src/tunnel/index.js'
import {loopbackPki} from '../../../helpers/test-pki.js'
import {CapturedLog, startHttp2Upstream, startUpstream, until} from '../harness.js'

interface Echo {
  path: string
  headers: Record<string, string>
  httpVersion: string
  bodyBytes: number
}

/** Serves every accepted TCP connection as if it were a tunnel stream, and returns raw responses. */
async function relayOnLoopback(relay: MemberApiRelay) {
  const server = net.createServer((socket) => relay.serve(socket))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    async exchange(raw: string): Promise<string> {
      const socket = net.connect(port, '127.0.0.1')
      const chunks: Buffer[] = []
      socket.on('data', (chunk: Buffer) => chunks.push(chunk))
      socket.write(raw)
      await once(socket, 'close')
      return Buffer.concat(chunks).toString()
    },
    close: () => server.close(),
  }
}

function echoes(raw: string): Echo[] {
  return [...raw.matchAll(/\{"method":.*?"bodyBytes":\d+\}/g)].map((match) => JSON.parse(match[0]) as Echo)
}

describe('tower agent: the member kube-apiserver relay', () => {
  it('puts the member credential on every request of a kept-alive stream, never the client’s', async () => {
    const pki = await loopbackPki('member-relay')
    const upstream = await startUpstream(pki.server)
    let token = 'member-token-1'
    const credentials = (): Promise<KubernetesCredentials> =>
      Promise.resolve({
        address: {host: '127.0.0.1', port: upstream.port},
        tls: {ca: pki.ca.certPem},
        authorization: `Bearer ${token}`,
      })
    const log = new CapturedLog()
    const relay = await relayOnLoopback(new MemberApiRelay(credentials, 'member', log.logger(), 0))
    try {
      const body = 'Authorization: Bearer in-a-body-is-data'
      const answer = await relay.exchange(
        'GET /api HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nAuthorization: Bearer client-token\r\n\r\n' +
          `POST /api/v1/namespaces HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nauthorization: Bearer client-token\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
          'GET /version HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nConnection: close\r\n\r\n',
      )
      const seen = echoes(answer)
      assert.deepEqual(
        seen.map((echo) => [echo.path, echo.headers.authorization, echo.bodyBytes]),
        [
          ['/api', 'Bearer member-token-1', 0],
          ['/api/v1/namespaces', 'Bearer member-token-1', body.length],
          ['/version', 'Bearer member-token-1', 0],
        ],
      )
      token = 'member-token-2'
      const rotated = echoes(
        await relay.exchange(
          'GET /api HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nConnection: close\r\n\r\n',
        ),
      )
      assert.equal(rotated[0]?.headers.authorization, 'Bearer member-token-2')
    } finally {
      relay.close()
      await upstream.close()
    }
  })

  it('relays an upgrade (as kubectl exec makes) with the member credential and the identity, then raw bytes both ways; one without an identity never leaves', async () => {
    const pki = await loopbackPki('member-relay')
    const upstream = https.createServer({cert: pki.server.certPem, key: pki.server.keyPem})
    const sockets = new WebSocketServer({server: upstream})
    const seen: (string | undefined)[] = []
    const impersonated: (string | string[] | undefined)[] = []
    sockets.on('connection', (socket, request) => {
      seen.push(request.headers.authorization)
      impersonated.push(request.headers['impersonate-user'], request.headers['impersonate-group'])
      socket.on('message', (data: Buffer) => socket.send(`member: ${data.toString()}`))
    })
    upstream.listen(0, '127.0.0.1')
    await once(upstream, 'listening')
    const credentials = (): Promise<KubernetesCredentials> =>
      Promise.resolve({
        address: {host: '127.0.0.1', port: (upstream.address() as net.AddressInfo).port},
        tls: {ca: pki.ca.certPem},
        authorization: 'Bearer member-token-1',
      })
    const log = new CapturedLog()
    const relay = await relayOnLoopback(new MemberApiRelay(credentials, 'member', log.logger(), 0))
    try {
      const client = new WebSocket(`ws://127.0.0.1:${relay.port}/api/v1/namespaces/default/pods/p/exec`, {
        headers: {
          authorization: 'Bearer client-token',
          'x-ksctl-identity-user': 'alice',
          'x-ksctl-identity-group': 'dev',
        },
      })
      await once(client, 'open')
      const answer = once(client, 'message')
      client.send('ls')
      assert.equal(String((await answer)[0]), 'member: ls')
      client.close()
      await once(client, 'close')
      assert.deepEqual(seen, ['Bearer member-token-1'])
      assert.deepEqual(impersonated, ['alice', 'dev'], 'the upgrade carries the identity')
      const withoutIdentity = new WebSocket(
        `ws://127.0.0.1:${relay.port}/api/v1/namespaces/default/pods/p/exec`,
      )
      const [, refused] = (await once(withoutIdentity, 'unexpected-response')) as [
        unknown,
        http.IncomingMessage,
      ]
      assert.equal(refused.statusCode, 403)
      // Aborting a handshake is reported as an error, which here is the point.
      withoutIdentity.on('error', () => undefined)
      withoutIdentity.terminate()
      assert.equal(seen.length, 1, 'an upgrade without an identity never reaches kube-apiserver')
    } finally {
      relay.close()
      sockets.close()
      upstream.closeAllConnections()
      upstream.close()
    }
  })

  it('relays each request as the identity the proxy states (Impersonate-User, one Impersonate-Group per group), never its own', async () => {
    const pki = await loopbackPki('member-relay')
    const upstream = await startUpstream(pki.server)
    const credentials = (): Promise<KubernetesCredentials> =>
      Promise.resolve({
        address: {host: '127.0.0.1', port: upstream.port},
        tls: {ca: pki.ca.certPem},
        authorization: 'Bearer member-token',
      })
    const log = new CapturedLog()
    const relay = await relayOnLoopback(new MemberApiRelay(credentials, 'member', log.logger(), 0))
    try {
      const [seen] = echoes(
        await relay.exchange(
          'GET /api HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\n' +
            'X-Ksctl-Identity-Group: dev\r\nX-Ksctl-Identity-Group: ops, night shift\r\nConnection: close\r\n\r\n',
        ),
      )
      assert.equal(seen?.headers.authorization, 'Bearer member-token')
      assert.equal(seen.headers['impersonate-user'], 'alice')
      // Node joins repeated headers with ", " when it parses them: two groups, the second holding a comma itself.
      assert.equal(seen.headers['impersonate-group'], 'dev, ops, night shift')
      assert.equal(seen.headers['x-ksctl-identity-user'], undefined)
      assert.equal(seen.headers['x-ksctl-identity-group'], undefined)

      // Refused before kube-apiserver, on the same kept stream, which then serves the next request.
      const answer = await relay.exchange(
        'GET /api HTTP/1.1\r\nHost: proxy\r\n\r\n' +
          'GET /api HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nImpersonate-User: admin\r\n\r\n' +
          'GET /api HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nimpersonate-extra-scopes: all\r\n\r\n' +
          'GET /version HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: bob\r\nConnection: close\r\n\r\n',
      )
      const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d+) /g)].map((match) => match[1])
      assert.deepEqual(statuses, ['403', '403', '403', '200'])
      assert.match(
        answer,
        /"message":"Forbidden: the agent of cluster member relays a request only as the client's identity, which this request does not state/,
      )
      assert.match(
        answer,
        /"message":"Forbidden: the agent of cluster member impersonates the identity the proxy verified and does not pass on Impersonate-User/,
      )
      assert.match(answer, /does not pass on impersonate-extra-scopes/)
      assert.deepEqual(
        echoes(answer).map((echo) => [echo.path, echo.headers['impersonate-user']]),
        [['/version', 'bob']],
      )
      assert.ok(!log.text.includes('member-token'))
    } finally {
      relay.close()
      await upstream.close()
    }
  })

  it('answers 502 with a Kubernetes Status naming the cluster and address when kube-apiserver is down', async () => {
    const closed = net.createServer()
    closed.listen(0, '127.0.0.1')
    await once(closed, 'listening')
    const port = (closed.address() as net.AddressInfo).port
    closed.close()
    const log = new CapturedLog()
    const credentials = (): Promise<KubernetesCredentials> =>
      Promise.resolve({address: {host: '127.0.0.1', port}, tls: {}, authorization: 'Bearer member-secret'})
    const relay = await relayOnLoopback(new MemberApiRelay(credentials, 'member', log.logger(), 0))
    try {
      const answer = await relay.exchange(
        'GET /api HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nConnection: close\r\n\r\n',
      )
      assert.match(answer, /^HTTP\/1\.1 502 /)
      const status = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as {
        kind: string
        message: string
      }
      assert.equal(status.kind, 'Status')
      assert.equal(
        status.message,
        `the agent of cluster member cannot reach kube-apiserver at 127.0.0.1:${port}: ECONNREFUSED`,
      )
      assert.match(log.text, /cannot reach the member kube-apiserver/)
      assert.ok(!log.text.includes('member-secret'))
    } finally {
      relay.close()
    }
  })

  it('reads credentials once per interval, and again at once after a failed read', async () => {
    let reads = 0
    let failNext = true
    const cached = cachedCredentials(() => {
      reads++
      if (failNext) {
        failNext = false
        return Promise.reject(new Error('token file missing'))
      }
      return Promise.resolve({address: {host: 'h', port: 1}, tls: {}, authorization: `Bearer ${reads}`})
    }, 60_000)
    await assert.rejects(cached(), /token file missing/)
    const [a, b] = await Promise.all([cached(), cached()])
    assert.equal(a.authorization, 'Bearer 2')
    assert.equal(a, b)
    assert.equal((await cached()).authorization, 'Bearer 2')
    assert.equal(reads, 2)
  })

  describe('to a kube-apiserver that speaks HTTP/2', () => {
    // Node 22 does not match an IPv6 address against a certificate's IP names: an IPv6 member is verified by
    // the certificate's DNS name here (the test certificate has localhost).
    const credentialsFor =
      (port: number, ca: string, host = '127.0.0.1') =>
      (): Promise<KubernetesCredentials> =>
        Promise.resolve({
          address: {host, port},
          tls: host.includes(':') ? {ca, servername: 'localhost'} : {ca},
          authorization: 'Bearer member-token',
        })

    /** A relay to an HTTP/2 upstream allowing `maxStreams` streams a connection, both closed after `use`. */
    async function withHttp2Member(
      maxStreams: number,
      use: (
        upstream: Awaited<ReturnType<typeof startHttp2Upstream>>,
        relay: Awaited<ReturnType<typeof relayOnLoopback>>,
      ) => Promise<void>,
      host = '127.0.0.1',
    ): Promise<void> {
      const pki = await loopbackPki('member-relay-h2')
      const upstream = await startHttp2Upstream(pki.server, maxStreams, host)
      const relay = await relayOnLoopback(
        new MemberApiRelay(
          credentialsFor(upstream.port, pki.ca.certPem, host),
          'member',
          new CapturedLog().logger(),
          0,
        ),
      )
      try {
        await use(upstream, relay)
      } finally {
        relay.close()
        await upstream.close()
      }
    }

    it('relays over HTTP/2: the member credential and the identity impersonated, the body whole, no Host or hop-by-hop header', async () => {
      await withHttp2Member(250, async (upstream, relay) => {
        const body = 'x'.repeat(200_000)
        const [seen] = echoes(
          await relay.exchange(
            `POST /api/v1/namespaces?dryRun=All HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nAuthorization: Bearer client-token\r\n` +
              'X-Ksctl-Identity-Group: dev\r\nX-Ksctl-Identity-Group: ops\r\n' +
              `Keep-Alive: timeout=5\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
          ),
        )
        assert.equal(seen?.httpVersion, '2.0')
        assert.equal(seen.path, '/api/v1/namespaces?dryRun=All')
        assert.equal(seen.headers.authorization, 'Bearer member-token')
        assert.equal(seen.headers['impersonate-user'], 'alice')
        assert.equal(seen.headers['impersonate-group'], 'dev, ops')
        assert.equal(seen.headers['x-ksctl-identity-user'], undefined)
        assert.equal(seen.headers[':authority'], `127.0.0.1:${upstream.port}`)
        assert.equal(seen.headers.host, undefined)
        assert.equal(seen.headers['keep-alive'], undefined)
        assert.equal(seen.bodyBytes, body.length)
      })
    })

    it('reaches kube-apiserver at an IPv6 address (an IPv6 or dual-stack cluster’s service address)', async () => {
      await withHttp2Member(
        250,
        async (upstream, relay) => {
          const [seen] = echoes(
            await relay.exchange(
              'GET /version HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nConnection: close\r\n\r\n',
            ),
          )
          assert.equal(seen?.httpVersion, '2.0')
          assert.equal(seen.headers[':authority'], `[::1]:${upstream.port}`)
        },
        '::1',
      )
    })

    it('shares connections: 120 concurrent long requests ride 3 connections of 50 streams', async () => {
      await withHttp2Member(50, async (upstream, relay) => {
        const answers = await Promise.all(
          Array.from({length: 120}, () =>
            relay.exchange(
              'GET /slow/300 HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nConnection: close\r\n\r\n',
            ),
          ),
        )
        assert.ok(answers.every((answer) => answer.endsWith('last after 300 ms\n')))
        assert.equal(upstream.sessionsSeen(), 3)
      })
    })

    it('opens a stream window of the tunnel stream’s size (what a stalled stream holds here), and a connection window no stream uses up', async () => {
      await withHttp2Member(250, async (upstream, relay) => {
        await relay.exchange(
          'GET /api HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nConnection: close\r\n\r\n',
        )
        const session = upstream.sessions()[0]
        assert.equal(session?.remoteSettings.initialWindowSize, INITIAL_WINDOW_BYTES)
        // With HTTP/2's default of 64 KiB shared by all streams, one download slows every request beside it.
        assert.ok((session.state.remoteWindowSize ?? 0) > 1e9)
      })
    })

    it('sends a bodiless request again when kube-apiserver refuses its stream unprocessed, never one with a body', async () => {
      const pki = await loopbackPki('member-relay-h2')
      // Refuses the next stream it is asked to, as a server going away refuses streams past its GOAWAY.
      let refuseNext = false
      const streams: string[] = []
      const server = http2.createSecureServer({cert: pki.server.certPem, key: pki.server.keyPem})
      const sessions = new Set<http2.ServerHttp2Session>()
      server.on('session', (session) => sessions.add(session))
      server.on('stream', (stream, headers) => {
        streams.push(String(headers[':method']))
        stream.on('error', () => undefined)
        stream.resume()
        if (refuseNext) {
          refuseNext = false
          stream.close(http2.constants.NGHTTP2_REFUSED_STREAM)
          return
        }
        stream.respond({':status': 200})
        stream.end('served\n')
      })
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      const port = (server.address() as net.AddressInfo).port
      const relay = await relayOnLoopback(
        new MemberApiRelay(credentialsFor(port, pki.ca.certPem), 'member', new CapturedLog().logger(), 0),
      )
      try {
        refuseNext = true
        const read = await relay.exchange(
          'GET /api HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nConnection: close\r\n\r\n',
        )
        assert.match(read, /^HTTP\/1\.1 200 /)
        assert.match(read, /\r\nserved\n\r\n/)
        refuseNext = true
        const write = await relay.exchange(
          'POST /api/v1/namespaces HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
        )
        assert.match(write, /^HTTP\/1\.1 502 /)
        assert.deepEqual(streams, ['GET', 'GET', 'POST'])
      } finally {
        relay.close()
        // close() leaves the relay's HTTP/2 connection open, which kept the test run alive for a minute.
        for (const session of sessions) session.destroy()
        server.close()
      }
    })

    it('cancels the kube-apiserver stream when the client goes away, and keeps the connection', async () => {
      await withHttp2Member(250, async (upstream, relay) => {
        const client = net.connect(relay.port, '127.0.0.1')
        client.write('GET /slow/60000 HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\n\r\n')
        await once(client, 'data')
        assert.equal(upstream.streamsOpen(), 1)
        client.destroy()
        await until(() => upstream.streamsOpen() === 0)
        const [after] = echoes(
          await relay.exchange(
            'GET /api HTTP/1.1\r\nHost: proxy\r\nX-Ksctl-Identity-User: alice\r\nConnection: close\r\n\r\n',
          ),
        )
        assert.equal(after?.httpVersion, '2.0')
        assert.equal(upstream.sessionsSeen(), 1)
      })
    })
  })
})

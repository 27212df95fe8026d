import assert from 'node:assert/strict'
import {once} from 'node:events'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import type {AddressInfo} from 'node:net'
import type {Duplex} from 'node:stream'

import {issueCertificate} from '../../../../src/pki/certificates.js'
import {freePort} from '../../../testbed/http.js'
import {loopbackPki} from '../../../helpers/test-pki.js'
import {
  CapturedLog,
  clientCredentials,
  frontEndRequest,
  startAgent,
  startProxy,
  until,
  type Echo,
  type ProxyHarness,
} from '../harness.js'

type Credentials = Awaited<ReturnType<typeof clientCredentials>>

/** One request over an HTTP/2 connection of its own, as client-go makes them. */
async function http2Request(
  url: string,
  credentials: Credentials,
  headers: http2.OutgoingHttpHeaders = {},
): Promise<{status: number; body: string}> {
  const {origin, pathname, search} = new URL(url)
  const session = http2.connect(origin, credentials)
  try {
    const stream = session.request({':path': `${pathname}${search}`, ...headers})
    stream.end()
    const [head] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders]
    let body = ''
    stream.setEncoding('utf8')
    for await (const chunk of stream) body += String(chunk)
    return {status: Number(head[':status']), body}
  } finally {
    session.close()
  }
}

/** An HTTP/1.1 upgrade (as kubectl exec and port-forward make), and the head of the answer. */
function upgrade(
  url: string,
  credentials: Credentials,
  headers: Record<string, string> = {},
): Promise<{status: number; headers: http.IncomingHttpHeaders; body: string}> {
  return new Promise((resolve, reject) => {
    const request = https.request(url, {
      ...credentials,
      agent: false,
      headers: {connection: 'Upgrade', upgrade: 'SPDY/3.1', ...headers},
    })
    request.on('upgrade', (response: http.IncomingMessage, socket: Duplex) => {
      socket.destroy()
      resolve({status: response.statusCode ?? 0, headers: response.headers, body: ''})
    })
    request.on('response', (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => (body += chunk))
      response.on('end', () => resolve({status: response.statusCode ?? 0, headers: response.headers, body}))
    })
    request.on('error', reject)
    request.end()
  })
}

describe('tower proxy front ends: credentials bound to one cluster, the client’s identity to the member', function () {
  this.timeout(30_000)
  let log: CapturedLog
  let harness: ProxyHarness
  let member: Credentials
  let ports: {member: number; other: number}
  const closers: (() => Promise<void> | void)[] = []
  /** What the member's "kube-apiserver" saw: requests and upgrades, with their headers. */
  const seen: {path: string; headers: http.IncomingHttpHeaders | http2.IncomingHttpHeaders}[] = []

  beforeEach(async () => {
    log = new CapturedLog()
    seen.length = 0
    ports = {member: await freePort(), other: await freePort()}
    harness = await startProxy(log, [
      {name: 'member', token: 'member-token-0123456789abcdef', kubernetesPort: ports.member},
      {name: 'other', token: 'other-token-0123456789abcdef', kubernetesPort: ports.other},
    ])
    member = await clientCredentials(harness.ca, {identity: {user: 'alice', groups: ['dev', 'ops']}})
    // kube-apiserver as the agent meets it: HTTP/2 for requests, HTTP/1.1 for upgrades (answered 101).
    const pki = await loopbackPki('tower-authz')
    const upstream = http2.createSecureServer(
      {cert: pki.server.certPem, key: pki.server.keyPem, allowHTTP1: true},
      (request, response) => {
        seen.push({path: request.url, headers: request.headers})
        response.writeHead(200, {'content-type': 'application/json'})
        response.end(
          JSON.stringify({path: request.url, headers: request.headers, httpVersion: request.httpVersion}),
        )
      },
    )
    upstream.on('upgrade', (request: http.IncomingMessage, socket: Duplex) => {
      seen.push({path: request.url ?? '', headers: request.headers})
      socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n')
    })
    const sessions = new Set<http2.ServerHttp2Session>()
    upstream.on('session', (session: http2.ServerHttp2Session) => sessions.add(session))
    upstream.listen(0, '127.0.0.1')
    await once(upstream, 'listening')
    const port = (upstream.address() as AddressInfo).port
    const agent = startAgent(log, harness.proxy.agentPort, {
      name: 'member',
      token: 'member-token-0123456789abcdef',
      kubernetes: () =>
        Promise.resolve({
          address: {host: '127.0.0.1', port},
          tls: {ca: pki.ca.certPem},
          authorization: 'Bearer sa',
        }),
    })
    await until(() => agent.ready)
    closers.push(
      () => agent.stop(),
      () => {
        for (const session of sessions) session.destroy()
        upstream.close()
      },
    )
  })

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close()
    await harness.proxy.stop()
    assert.doesNotMatch(log.text, /BEGIN CERTIFICATE|BEGIN PRIVATE KEY/, 'no certificate or key in the logs')
    const body = member.cert.split('\n')[1] ?? 'x'
    assert.ok(!log.text.includes(body), 'no part of the client certificate in the logs')
  })

  const pathRouted = (cluster: string, path = '/api') =>
    `https://127.0.0.1:${harness.proxy.frontEndPort}/clusters/${cluster}${path}`
  const ownPort = (cluster: 'member' | 'other', path = '/api') => `https://127.0.0.1:${ports[cluster]}${path}`

  it('serves a certificate bound to its cluster on both front ends, and refuses it with 403 on another cluster’s', async () => {
    for (const url of [pathRouted('member'), ownPort('member')]) {
      assert.equal((await frontEndRequest(url, member)).status, 200, url)
    }
    for (const url of [pathRouted('other'), ownPort('other')]) {
      const refused = await frontEndRequest(url, member)
      assert.equal(refused.status, 403, url)
      // Plain text: kubectl shows it as it is, even in answer to its discovery requests.
      assert.equal(
        refused.body,
        'Forbidden: this client certificate is bound to cluster member, not other: use a kubeconfig issued for cluster other (ksctl tower issue-kubeconfig --cluster other)\n',
      )
      assert.equal((await http2Request(url, member)).status, 403, `${url} over HTTP/2`)
      assert.equal((await upgrade(url, member)).status, 403, `${url}, an upgrade`)
    }
    assert.match(
      await harness.proxy.metrics.render(),
      /ksctl_tower_auth_failures_total\{endpoint="front_end",reason="wrong_cluster"\} 6/,
    )
    assert.match(log.text, /"reason":"wrong_cluster".*"cluster":"other".*"boundTo":"member"/)
  })

  it('refuses a certificate bound to no cluster (issued before the binding), saying to issue it again', async () => {
    const unbound = await clientCredentials(harness.ca, {unbound: true})
    for (const url of [pathRouted('member'), ownPort('member')]) {
      const refused = await frontEndRequest(url, unbound)
      assert.equal(refused.status, 403)
      assert.match(
        refused.body,
        /this client certificate is not bound to cluster member \(it was issued before ksctl bound credentials to one cluster\): issue a kubeconfig for cluster member again with ksctl tower issue-kubeconfig --cluster member/,
      )
    }
    assert.match(await harness.proxy.metrics.render(), /reason="unbound_client_certificate"\} 2/)
  })

  it('forwards the certificate’s user and groups, which the agent impersonates with its own credential, over HTTP/1.1 and HTTP/2', async () => {
    for (const answer of [
      await frontEndRequest(pathRouted('member'), member, {headers: {authorization: 'Bearer client-token'}}),
      await http2Request(ownPort('member'), member, {authorization: 'Bearer client-token'}),
    ]) {
      assert.equal(answer.status, 200)
      const echo = JSON.parse(answer.body) as Echo
      assert.equal(echo.headers.authorization, 'Bearer sa')
      assert.equal(echo.headers['impersonate-user'], 'alice')
      assert.equal(echo.headers['impersonate-group'], 'dev, ops')
      assert.equal(echo.headers['x-ksctl-identity-user'], undefined)
    }
    assert.deepEqual(
      seen.map((request) => request.path),
      ['/api', '/api'],
    )
  })

  it('forwards the identity with an upgrade (exec, port-forward)', async () => {
    const answer = await upgrade(ownPort('member', '/api/v1/namespaces/default/pods/p/exec'), member)
    assert.equal(answer.status, 101)
    const [exec] = seen
    assert.equal(exec?.path, '/api/v1/namespaces/default/pods/p/exec')
    assert.equal(exec.headers['impersonate-user'], 'alice')
    assert.equal(exec.headers['impersonate-group'], 'dev, ops')
    assert.equal(exec.headers.authorization, 'Bearer sa')
    assert.equal(exec.headers['x-ksctl-identity-user'], undefined)
  })

  it('refuses a client that asks to impersonate (kubectl --as) or states an identity itself, before anything reaches the member', async () => {
    const before = seen.length
    // As sent, and as the refusal names it.
    const asked: [string, string, string][] = [
      ['Impersonate-User', 'admin', 'Impersonate-User'],
      ['impersonate-group', 'system:masters', 'Impersonate-Group'],
      ['Impersonate-Extra-Scopes', 'all', 'Impersonate-Extra-Scopes'],
      ['x-ksctl-identity-user', 'admin', 'X-Ksctl-Identity-User'],
    ]
    for (const [name, value, named] of asked) {
      const refused = await frontEndRequest(pathRouted('member'), member, {headers: {[name]: value}})
      assert.equal(refused.status, 403, name)
      assert.match(
        refused.body,
        new RegExp(
          `forwards each request to cluster member as the user and groups of its client certificate \\(alice\\) and does not pass on ${named} \\(kubectl --as, --as-group\\): issue a kubeconfig for the identity you need`,
        ),
      )
      assert.equal((await http2Request(ownPort('member'), member, {[name.toLowerCase()]: value})).status, 403)
      assert.equal((await upgrade(ownPort('member', '/exec'), member, {[name]: value})).status, 403)
    }
    assert.equal(seen.length, before)
    assert.match(await harness.proxy.metrics.render(), /reason="impersonation_header"\} 12/)
  })

  it('refuses a certificate whose identity cannot be forwarded as it is (not printable ASCII)', async () => {
    const issued = await issueCertificate(harness.ca, {
      commonName: 'zoë',
      uris: ['urn:ksctl:cluster:member'],
      usage: 'client',
      validityDays: 1,
    })
    const refused = await frontEndRequest(pathRouted('member'), {
      ca: harness.ca.certPem,
      cert: issued.certPem,
      key: issued.keyPem,
    })
    assert.equal(refused.status, 403)
    assert.match(refused.body, /cannot be forwarded to cluster member: the user must be printable ASCII/)
  })
})

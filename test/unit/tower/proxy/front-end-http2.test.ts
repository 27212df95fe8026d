import assert from 'node:assert/strict'
import http2 from 'node:http2'

import {
  CapturedLog,
  clientCredentials,
  clusterToken,
  memberSetup,
  saToken,
  startProxy,
  until,
  type Echo,
  type ProxyHarness,
} from '../harness.js'

interface Http2Response {
  status: number
  headers: http2.IncomingHttpHeaders
  body: string
}

/** One HTTP/2 connection to a front end, as client-go makes: every request is a stream on it. */
class Http2Client {
  readonly session: http2.ClientHttp2Session

  constructor(port: number, credentials: {ca: string; cert?: string; key?: string}) {
    this.session = http2.connect(`https://127.0.0.1:${port}`, credentials)
    this.session.on('error', () => undefined)
  }

  /** Resolves with the head as soon as it arrives; `body` settles when the stream ends. */
  start(
    path: string,
    options: {method?: string; headers?: http2.OutgoingHttpHeaders; body?: string} = {},
  ): Promise<{status: number; headers: http2.IncomingHttpHeaders; body: Promise<string>}> {
    const stream = this.session.request({
      ':method': options.method ?? 'GET',
      ':path': path,
      ...options.headers,
    })
    stream.end(options.body)
    const body = new Promise<string>((resolve, reject) => {
      let text = ''
      stream.setEncoding('utf8')
      stream.on('data', (chunk: string) => (text += chunk))
      stream.once('end', () => resolve(text))
      stream.once('error', reject)
    })
    body.catch(() => undefined)
    return new Promise((resolve, reject) => {
      stream.once('response', (headers) => resolve({status: Number(headers[':status']), headers, body}))
      stream.once('error', reject)
    })
  }

  async request(
    path: string,
    options: {method?: string; headers?: http2.OutgoingHttpHeaders; body?: string} = {},
  ): Promise<Http2Response> {
    const started = await this.start(path, options)
    return {status: started.status, headers: started.headers, body: await started.body}
  }

  close(): void {
    this.session.destroy()
  }
}

describe('tower proxy front ends over HTTP/2', function () {
  this.timeout(30_000)
  let log: CapturedLog
  let harness: ProxyHarness
  let member: Awaited<ReturnType<typeof memberSetup>>
  let credentials: Awaited<ReturnType<typeof clientCredentials>>
  const clients: Http2Client[] = []

  const connect = (
    port = harness.proxy.frontEndPort ?? 0,
    asWho: {ca: string; cert?: string; key?: string} = credentials,
  ): Http2Client => {
    const client = new Http2Client(port, asWho)
    clients.push(client)
    return client
  }

  beforeEach(async () => {
    log = new CapturedLog()
    harness = await startProxy(log)
    member = await memberSetup(log, harness)
    credentials = await clientCredentials(harness.ca)
    member.newAgent()
    await until(() => member.agents.every((agent) => agent.ready))
  })

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close()
    await Promise.all(member.agents.map((agent) => agent.stop()))
    await harness.proxy.stop()
    await member.upstream.close()
    for (const secret of [clusterToken, saToken, 'client-secret-token']) {
      assert.ok(!log.text.includes(secret), `a log line holds ${secret}`)
    }
  })

  it('negotiates HTTP/2 and relays as HTTP/1.1: Host from :authority, cookies joined, the member credential instead of the client’s, the body whole', async () => {
    const client = connect()
    const response = await client.request('/clusters/member/api/v1/pods?watch=false', {
      method: 'POST',
      headers: {
        authorization: 'Bearer client-secret-token',
        cookie: ['a=1', 'b=2'],
        'content-type': 'application/json',
      },
      body: 'x'.repeat(600_000),
    })
    assert.equal(response.status, 200)
    assert.equal(client.session.alpnProtocol, 'h2')
    // Uploads are flow-controlled per stream: the connection's window holds every stream's.
    assert.equal(client.session.remoteSettings.maxConcurrentStreams, 1000)
    assert.equal(client.session.remoteSettings.initialWindowSize, 256 * 1024)
    assert.ok((client.session.state.remoteWindowSize ?? 0) >= 1000 * 256 * 1024 - 600_000)
    const echo = JSON.parse(response.body) as Echo
    assert.equal(echo.method, 'POST')
    assert.equal(echo.path, '/api/v1/pods?watch=false')
    assert.equal(echo.headers.host, `127.0.0.1:${harness.proxy.frontEndPort}`)
    assert.equal(echo.headers.cookie, 'a=1; b=2')
    assert.equal(echo.headers.authorization, `Bearer ${saToken}`)
    assert.equal(echo.bodyBytes, 600_000)
    assert.ok(!Object.keys(echo.headers).some((name) => name.startsWith(':')))
  })

  it('carries many concurrent long-lived requests on one connection, each answered in full', async () => {
    const client = connect()
    const started = await Promise.all(
      Array.from({length: 200}, (_, index) => client.start(`/clusters/member/slow/${200 + index}`)),
    )
    assert.ok(started.every((response) => response.status === 200))
    const bodies = await Promise.all(started.map((response) => response.body))
    bodies.forEach((body, index) => assert.equal(body, `first\nlast after ${200 + index} ms\n`))
  })

  it('ends the member request when the client cancels its stream or drops the connection', async () => {
    const client = connect()
    const cancelled = client.session.request({':path': '/clusters/member/slow/60000'})
    await new Promise((resolve) => cancelled.once('response', resolve))
    assert.equal(harness.proxy.pool.streamsOpen('member'), 1)
    // client-go ends a watch this way: RST_STREAM, the connection stays.
    cancelled.close(http2.constants.NGHTTP2_CANCEL)
    await until(() => harness.proxy.pool.streamsOpen('member') === 0)
    const dropped = await connect().start('/clusters/member/slow/60000')
    assert.equal(dropped.status, 200)
    clients.at(-1)?.close()
    await until(() => harness.proxy.pool.streamsOpen('member') === 0)
    assert.equal((await client.request('/clusters/member/api')).status, 200)
  })

  it('sends a watch’s head before its first event', async () => {
    const started = performance.now()
    const response = await connect().start('/clusters/member/quiet/3000')
    assert.equal(response.status, 200)
    assert.ok(performance.now() - started < 2000, `the head took ${performance.now() - started} ms`)
    assert.equal(await response.body, '{}\n')
  })

  it('answers a client without a certificate, and an unknown cluster, with a Kubernetes Status', async () => {
    const anonymous = await connect(harness.proxy.frontEndPort, {ca: credentials.ca}).request(
      '/clusters/member/api',
    )
    assert.equal(anonymous.status, 401)
    assert.equal((JSON.parse(anonymous.body) as {reason: string}).reason, 'Unauthorized')
    const unknown = await connect().request('/clusters/nope/api')
    assert.equal(unknown.status, 404)
  })

  it('answers 502 naming the cluster when the member’s head cannot be carried over HTTP/2, and keeps serving', async () => {
    const client = connect()
    const refused = await client.request('/clusters/member/typed-twice')
    assert.equal(refused.status, 502)
    assert.match(refused.body, /cluster member answered with a response head HTTP\/2 cannot carry/)
    assert.equal((await client.request('/clusters/member/api')).status, 200)
  })

  it('on proxy.stop() tells the client to open no new streams and lets the one in flight finish', async () => {
    const client = connect()
    const inFlight = await client.start('/clusters/member/slow/800')
    const goaway = new Promise((resolve) => client.session.once('goaway', resolve))
    const stopping = harness.proxy.stop()
    await goaway
    assert.equal(await inFlight.body, 'first\nlast after 800 ms\n')
    await stopping
  })
})

import http from 'node:http'
import https from 'node:https'
import net from 'node:net'

export interface ClientCertificate {
  caPem: string
  certPem: string
  keyPem: string
}

export interface HttpResponse {
  status: number
  body: string
}

export interface HttpRequest {
  method?: string
  json?: unknown
  credentials?: ClientCertificate
  timeoutMs?: number
}

/** A one-shot request without connection reuse, so nothing keeps the test process alive afterwards. */
export async function request(
  url: string,
  {method = 'GET', json, credentials, timeoutMs = 5000}: HttpRequest,
) {
  const body = json === undefined ? undefined : JSON.stringify(json)
  const options: https.RequestOptions = {
    method,
    agent: false,
    timeout: timeoutMs,
    headers: body === undefined ? {} : {'content-type': 'application/json'},
    ...(credentials && {ca: credentials.caPem, cert: credentials.certPem, key: credentials.keyPem}),
  }
  const send = url.startsWith('https:') ? https.request : http.request
  return new Promise<HttpResponse>((resolve, reject) => {
    const req = send(url, options, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => {
        resolve({status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8')})
      })
      response.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out after ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end(body)
  })
}

const portsHandedOut = new Set<number>()

/** A port nothing listens on right now; never the same one twice in this process. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer()
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => {
        const address = server.address()
        server.close(() => {
          if (address && typeof address === 'object') resolve(address.port)
          else reject(new Error('could not read the port of a probe listener'))
        })
      })
    })
    if (!portsHandedOut.has(port)) {
      portsHandedOut.add(port)
      return port
    }
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/**
 * A range for a tower proxy's `--cluster-ports`: `count` consecutive ports free on 127.0.0.1, each with the port
 * 10000 above it (the cluster's kubesphere port), all below Linux's ephemeral range (32768 and up) so that no
 * outgoing connection takes one meanwhile. Tests use it instead of Tower's 6000-6999, which a tower proxy
 * running on the machine may hold.
 */
export async function freeClusterPorts(count: number): Promise<{first: number; last: number; flag: string}> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const first = 15_000 + Math.floor(Math.random() * (7_000 - count))
    const ports = Array.from({length: count}, (_, index) => first + index).flatMap((port) => [
      port,
      port + 10_000,
    ])
    if (ports.some((port) => portsHandedOut.has(port))) continue
    if ((await Promise.all(ports.map(isFree))).every(Boolean)) {
      for (const port of ports) portsHandedOut.add(port)
      const last = first + count - 1
      return {first, last, flag: `${first}-${last}`}
    }
  }
  throw new Error(`no ${count} free cluster ports below 32768`)
}

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

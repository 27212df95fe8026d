import http from 'node:http'
import type {AddressInfo} from 'node:net'

import type {TowerMetrics} from './metrics.js'
import {listen, parseListenAddress} from './net.js'

export interface OpsServerOptions {
  address: string
  metrics: TowerMetrics
  /** Agent: holds a live session. Proxy: its listeners are up and it is not shutting down. */
  ready: () => boolean
}

/** `/healthz` (the process runs), `/readyz` (it can serve) and `/metrics` (Prometheus text), on one plain port. */
export class OpsServer {
  private constructor(private readonly server: http.Server) {}

  static async start(options: OpsServerOptions): Promise<OpsServer> {
    const server = http.createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0]
      if (path === '/healthz') {
        reply(response, 200, 'ok\n')
      } else if (path === '/readyz') {
        const ready = options.ready()
        reply(response, ready ? 200 : 503, ready ? 'ok\n' : 'not ready\n')
      } else if (path === '/metrics') {
        options.metrics.render().then(
          (text) => reply(response, 200, text, options.metrics.registry.contentType),
          () => reply(response, 500, 'metrics unavailable\n'),
        )
      } else {
        reply(response, 404, 'not found\n')
      }
    })
    await listen(server, parseListenAddress(options.address, '--metrics-address'))
    return new OpsServer(server)
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

function reply(response: http.ServerResponse, status: number, body: string, type = 'text/plain'): void {
  response.writeHead(status, {'content-type': type, 'content-length': Buffer.byteLength(body)})
  response.end(body)
}

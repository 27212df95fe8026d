import http from 'node:http'
import type net from 'node:net'

import {hostnameOf} from '../shared/net.js'

/** `host:port` of an HTTP proxy, for logs and messages: never its userinfo, which may hold a password. */
export function proxyAddress(proxy: URL): string {
  return `${proxy.hostname}:${proxy.port || '80'}`
}

export interface ConnectTunnelOptions {
  /** The `http://` proxy; its userinfo, when present, is sent as Basic Proxy-Authorization. */
  proxy: URL
  /** Where the tunnel leads: `host:port`, an IPv6 host in brackets. */
  target: string
  timeoutMs: number
  signal?: AbortSignal
}

/**
 * A TCP tunnel to `target` through an HTTP proxy (CONNECT). Node's client reads the proxy's answer, so the
 * socket it hands over carries only the tunnel: TLS or a WebSocket handshake can start on it as on a direct
 * connection. Errors never name the proxy's credentials.
 */
export function openConnectTunnel(options: ConnectTunnelOptions): Promise<net.Socket> {
  const {proxy, target, timeoutMs, signal} = options
  const address = proxyAddress(proxy)
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: hostnameOf(proxy),
      port: Number(proxy.port || '80'),
      method: 'CONNECT',
      path: target,
      headers: {host: target, ...proxyAuthorization(proxy)},
      agent: false,
      ...(signal !== undefined && {signal}),
    })
    const timeout = new Error(`the HTTP proxy ${address} did not answer CONNECT within ${timeoutMs} ms`)
    const timer = setTimeout(() => request.destroy(timeout), timeoutMs)
    request.once('connect', (response: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      clearTimeout(timer)
      const status = response.statusCode ?? 0
      if (status < 200 || status > 299) {
        socket.destroy()
        reject(
          new Error(`the HTTP proxy ${address} refused CONNECT: ${status} ${response.statusMessage ?? ''}`),
        )
        return
      }
      if (head.length > 0) socket.unshift(head)
      resolve(socket)
    })
    request.once('error', (error) => {
      clearTimeout(timer)
      reject(
        error === timeout ? timeout : new Error(`cannot reach the HTTP proxy ${address}: ${error.message}`),
      )
    })
    request.end()
  })
}

function proxyAuthorization(proxy: URL): Record<string, string> {
  if (proxy.username === '' && proxy.password === '') return {}
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`
  return {'proxy-authorization': `Basic ${Buffer.from(credentials).toString('base64')}`}
}

import type http from 'node:http'
import type http2 from 'node:http2'
import type {AddressInfo} from 'node:net'
import type {SecureContextOptions, TLSSocket} from 'node:tls'

/** A front-end server with the two ways of shutting it that the proxy needs. */
export interface FrontEndListener {
  readonly port: number | undefined
  /**
   * Stops accepting connections; idle HTTP/1.1 connections close now, the rest when their request ends, and
   * HTTP/2 clients are told to open no more streams (GOAWAY) while theirs finish.
   */
  stopAccepting(): void
  /** Closes every connection still open. */
  closeAll(): void
}

export class PlainListener implements FrontEndListener {
  constructor(private readonly server: http.Server) {}

  get port(): number | undefined {
    return (this.server.address() as AddressInfo | null)?.port
  }

  stopAccepting(): void {
    this.server.close()
    this.server.closeIdleConnections()
  }

  closeAll(): void {
    this.server.close()
    this.server.closeAllConnections()
  }
}

/** An HTTPS server answering HTTP/2 and HTTP/1.1: Node closes neither kind of its connections for us. */
export class SecureListener implements FrontEndListener {
  private readonly sockets = new Set<TLSSocket>()
  private readonly sessions = new Set<http2.ServerHttp2Session>()

  constructor(
    private readonly server: http2.Http2SecureServer,
    sessionWindowBytes: number,
  ) {
    server.on('secureConnection', (socket: TLSSocket) => {
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
    })
    server.on('session', (session: http2.ServerHttp2Session) => {
      this.sessions.add(session)
      session.once('close', () => this.sessions.delete(session))
      session.setLocalWindowSize(sessionWindowBytes)
    })
  }

  get port(): number | undefined {
    return (this.server.address() as AddressInfo | null)?.port
  }

  /** A renewed certificate (or CA) for the connections to come; those open keep theirs. */
  setSecureContext(options: SecureContextOptions): void {
    this.server.setSecureContext(options)
  }

  stopAccepting(): void {
    this.server.close()
    // Node 22 has it for an HTTP/2 server's HTTP/1.1 connections (allowHTTP1); @types/node does not declare it.
    ;(this.server as unknown as http.Server).closeIdleConnections()
    for (const session of this.sessions) session.close()
  }

  closeAll(): void {
    this.server.close()
    for (const session of this.sessions) session.destroy()
    for (const socket of this.sockets) socket.destroy()
  }
}

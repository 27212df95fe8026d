import {AsyncLocalStorage} from 'node:async_hooks'

import {KubeConfig, type Cluster, type DispatcherOptions, type RequestContext} from '@kubernetes/client-node'

/**
 * The limits of the one API request under way. `ClusterClient.call` sets them around a request, and the hooks
 * of {@link LimitedKubeConfig} read them: client-node builds a new undici Agent for every request deep inside
 * its generated API classes, where no option passed by the caller reaches.
 */
export interface RequestLimits {
  /** The request's time-out in ms, which also bounds connecting (TCP and TLS); 0: none. */
  timeoutMs: number
  /** Ends the request and closes its connection, even one still connecting. */
  signal: AbortSignal
  /** Set by the hook: the request as it is sent (its URL says whether it is a dry run). */
  sent?: {method: string; url: string}
}

const currentRequest = new AsyncLocalStorage<RequestLimits>()

/** Runs `request` (one client-node call) under `limits`. */
export function withRequestLimits<T>(limits: RequestLimits, request: () => Promise<T>): Promise<T> {
  return currentRequest.run(limits, request)
}

/**
 * A KubeConfig whose requests obey the limits of `withRequestLimits`, in place of undici's fixed ones (10 s to
 * connect, whatever `--timeout` said; 300 s for headers and for each body chunk):
 * - fetch gets the request's signal, so a request that timed out is aborted;
 * - the connection gets it too (undici hands its connect options to `tls.connect`, whose socket takes a
 *   `signal`): aborting a fetch alone leaves a socket that is still connecting open until undici's connect
 *   time-out, and with none, for ever;
 * - connecting is bounded by the request's time-out (0: not at all), and undici's headers and body time-outs
 *   are off: the request's deadline covers the whole exchange.
 * Outside `withRequestLimits` it behaves exactly as client-node's KubeConfig.
 */
export class LimitedKubeConfig extends KubeConfig {
  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context)
    const limits = currentRequest.getStore()
    if (limits === undefined) return
    limits.sent = {method: context.getHttpMethod(), url: context.getUrl()}
    context.setSignal(limits.signal)
    // Per-request options that undici reads from each dispatch; fetch has no way to pass them.
    const withoutUndiciTimeouts = context
      .getDispatcher()
      ?.compose(
        (dispatch) => (options, handler) =>
          dispatch({...options, headersTimeout: 0, bodyTimeout: 0}, handler),
      )
    if (withoutUndiciTimeouts !== undefined) context.setDispatcher(withoutUndiciTimeouts)
  }

  override createDispatcherOptions(
    cluster: Cluster | null,
    agentOptions: Parameters<KubeConfig['createDispatcherOptions']>[1],
  ): DispatcherOptions {
    const options = super.createDispatcherOptions(cluster, agentOptions)
    const limits = currentRequest.getStore()
    if (limits === undefined) return options
    const connect = {timeout: limits.timeoutMs, signal: limits.signal}
    switch (options.type) {
      case 'agent':
      case 'proxy':
        return {...options, connect: {...options.connect, ...connect}}
      case 'none':
        // client-node would use undici's global dispatcher, with its fixed connect time-out.
        return {type: 'agent', connect: {keepAlive: true, keepAliveInitialDelay: 30_000, ...connect}}
      case 'socks':
        // The SOCKS connector takes neither; the request's signal still ends the request.
        return options
    }
  }
}

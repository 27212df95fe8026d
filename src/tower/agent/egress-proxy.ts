import {isIP} from 'node:net'

import {getProxyForUrl} from 'proxy-from-env'

import {invalidInput} from '../../errors.js'
import {redactor} from '../../redact.js'
import {hostnameOf} from '../shared/net.js'

/**
 * The HTTP proxy the agent goes through to reach `proxyUrl`, read from the environment as curl and axios read
 * it: HTTPS_PROXY for wss://, HTTP_PROXY for ws://, else ALL_PROXY (lower case first), none when NO_PROXY
 * matches. Only `http://` proxies are supported; the password, if any, is registered with the redactor.
 */
export function egressProxyFor(proxyUrl: URL): URL | undefined {
  // As Go's ProxyFromEnvironment, which Tower's agent used: a proxy on this machine is never reached through one.
  if (isLoopback(hostnameOf(proxyUrl))) return undefined
  const scheme = proxyUrl.protocol === 'wss:' ? 'https' : 'http'
  // proxy-from-env picks the variable by the URL's scheme: given ws:// it would look for WS_PROXY.
  if (getProxyForUrl(`${scheme}://${proxyUrl.host}/`) === '') return undefined
  const variable = [`${scheme}_proxy`, `${scheme.toUpperCase()}_PROXY`, 'all_proxy', 'ALL_PROXY'].find(
    (name) => (process.env[name] ?? '') !== '',
  )
  if (variable === undefined) return undefined
  const value = process.env[variable] ?? ''
  const next = [
    `set ${variable} to http://HOST:PORT`,
    `or add ${proxyUrl.hostname} to NO_PROXY to connect directly`,
  ]
  let proxy: URL
  try {
    // Without a scheme curl assumes http://, where proxy-from-env would assume the target's scheme.
    proxy = new URL(value.includes('://') ? value : `http://${value}`)
    redactor.register(proxy.password)
    // Both are decoded for Proxy-Authorization: a malformed %-escape fails here, at start, not every attempt.
    redactor.register(decodeURIComponent(proxy.password))
    decodeURIComponent(proxy.username)
  } catch {
    // The value itself is not repeated: it may hold a password.
    throw invalidInput(`${variable} is not a valid proxy URL`, next)
  }
  if (proxy.protocol !== 'http:') {
    throw invalidInput(
      `${variable} names a ${proxy.protocol}// proxy; the agent supports only http:// proxies (HTTP CONNECT)`,
      next,
    )
  }
  return proxy
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'))
}

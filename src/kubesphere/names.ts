import {invalidInput} from '../errors.js'

const HOST_CLUSTER_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/
const PROXY_CLUSTER_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
/** The proxy creates Service `mc-NAME`, and a Service name is at most 63 characters. */
export const MAX_PROXY_CLUSTER_NAME_LENGTH = 60

/** KubeSphere's rule for hostClusterName: lowercase letters, digits, `-` and `.`, alphanumeric at both ends. */
export function validateHostClusterName(name: string, flag = '--name'): string {
  if (name.length > 63 || !HOST_CLUSTER_NAME.test(name)) {
    throw invalidInput(
      `${flag} "${name}" is not a valid host cluster name: use lowercase letters, digits, "-" and ".", ` +
        'starting and ending with a letter or digit, at most 63 characters',
      [`for example: ${flag} host`],
    )
  }
  return name
}

/** A member joined through the proxy: lowercase letters, digits and `-`, at most 60 characters. */
export function isProxyClusterName(name: string): boolean {
  return name.length <= MAX_PROXY_CLUSTER_NAME_LENGTH && PROXY_CLUSTER_NAME.test(name)
}

export function validateProxyClusterName(name: string, what = 'cluster name'): string {
  if (!isProxyClusterName(name)) {
    throw invalidInput(
      `${what} "${name}" is not valid for a proxy-connected cluster: use lowercase letters, digits and "-", ` +
        `starting and ending with a letter or digit, at most ${MAX_PROXY_CLUSTER_NAME_LENGTH} characters ` +
        '(the proxy creates a Service named mc-NAME)',
      ['for example: member1, idc-beijing'],
    )
  }
  return name
}

import {invalidInput} from '../errors.js'

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/

/**
 * `key=value` pairs of `--label`, validated by Kubernetes' label rules before anything is sent. A key given
 * twice is refused, even with the same value: which one was meant cannot be told.
 */
export function parseLabels(pairs: string[], flag = '--label'): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const pair of pairs) {
    const separator = pair.indexOf('=')
    const key = separator < 0 ? pair : pair.slice(0, separator)
    const value = separator < 0 ? undefined : pair.slice(separator + 1)
    if (value === undefined || !validKey(key) || !LABEL_VALUE.test(value)) {
      throw invalidInput(
        `${flag} "${pair}" is not a valid label: use key=value, the key an optional DNS prefix and a name ` +
          '(letters, digits, "-", "_", "."), the value at most 63 such characters',
        [`for example: ${flag} cluster.kubesphere.io/group=production`],
      )
    }
    if (Object.hasOwn(labels, key)) {
      throw invalidInput(
        `${flag} "${key}" is given more than once (${flag} ${key}=${labels[key] ?? ''} and ${flag} ${pair})`,
        [`give each label once, e.g. ${flag} ${pair}`],
      )
    }
    labels[key] = value
  }
  return labels
}

function validKey(key: string): boolean {
  const slash = key.indexOf('/')
  if (slash < 0) return LABEL_NAME.test(key)
  const prefix = key.slice(0, slash)
  return prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix) && LABEL_NAME.test(key.slice(slash + 1))
}

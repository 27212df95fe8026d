import {load} from 'js-yaml'

import {KsctlError} from '../errors.js'
import {redactor} from '../redact.js'
import {KUBESPHERE_CONFIG_KEY, KUBESPHERE_CONFIG_NAME, KUBESPHERE_NAMESPACE} from './constants.js'

/** The parts of `kubesphere.yaml` ksctl reads; everything else is kept as it is when ksctl writes. */
export interface KubeSphereConfig {
  authentication?: {jwtSecret?: string; issuer?: {jwtSecret?: string}}
  multicluster?: MulticlusterOptions
  [key: string]: unknown
}

export interface MulticlusterOptions {
  clusterRole?: string
  enable?: boolean
  hostClusterName?: string
  clusterName?: string
  proxyPublishAddress?: string
  proxyPublishService?: string
  agentImage?: string
  [key: string]: unknown
}

/** Parses `kubesphere.yaml` text, registering its jwtSecret for redaction before anything can print it. */
export function parseKubeSphereConfig(text: string | undefined, context: string): KubeSphereConfig {
  if (text === undefined || text.trim() === '') return {}
  let parsed: unknown
  try {
    parsed = load(text)
  } catch (error) {
    throw new KsctlError(
      `configmap ${KUBESPHERE_NAMESPACE}/${KUBESPHERE_CONFIG_NAME} key ${KUBESPHERE_CONFIG_KEY} is not valid YAML ` +
        `in context "${context}"`,
      {
        code: 'PRECONDITION_FAILED',
        context,
        object: {resource: 'configmaps', name: KUBESPHERE_CONFIG_NAME, namespace: KUBESPHERE_NAMESPACE},
        cause: error,
        suggestions: [
          `inspect it: kubectl --context ${context} -n ${KUBESPHERE_NAMESPACE} get cm ${KUBESPHERE_CONFIG_NAME} -o yaml`,
        ],
      },
    )
  }
  const config = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as KubeSphereConfig
  redactor.register(config.authentication?.jwtSecret)
  redactor.register(config.authentication?.issuer?.jwtSecret)
  return config
}

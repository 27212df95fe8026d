import {existsSync} from 'node:fs'
import {mkdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {dump} from 'js-yaml'

import {invalidInput} from '../../errors.js'
import {createCertificateAuthority, issueCertificate, type CertificateAndKey} from '../../pki/certificates.js'
import {writePrivateFile} from '../../private-file.js'

export const caCertFile = 'ca.crt'
export const caKeyFile = 'ca.key'

export interface ProxyCaSource {
  caCert?: string
  caKey?: string
  stateDir?: string
}

/**
 * The proxy CA: from --ca-cert/--ca-key, else from --state-dir, created there on first start. ksctl never ships
 * a CA key, so two installations never share one (unlike Tower's committed ca.key).
 */
export async function loadProxyCa(
  source: ProxyCaSource,
  createIfAbsent: boolean,
): Promise<CertificateAndKey> {
  if (source.caCert !== undefined || source.caKey !== undefined) {
    if (source.caCert === undefined || source.caKey === undefined) {
      throw invalidInput('--ca-cert and --ca-key go together')
    }
    return {
      certPem: await readText(source.caCert, '--ca-cert'),
      keyPem: await readText(source.caKey, '--ca-key'),
    }
  }
  if (source.stateDir === undefined) throw invalidInput('give --ca-cert and --ca-key, or --state-dir')
  const certPath = join(source.stateDir, caCertFile)
  const keyPath = join(source.stateDir, caKeyFile)
  if (existsSync(certPath) && existsSync(keyPath)) {
    return {certPem: await readText(certPath, '--state-dir'), keyPem: await readText(keyPath, '--state-dir')}
  }
  if (!createIfAbsent)
    throw invalidInput(`no proxy CA in --state-dir ${source.stateDir}: start the proxy first`)
  await mkdir(source.stateDir, {recursive: true, mode: 0o700})
  const ca = await createCertificateAuthority({commonName: 'ksctl-tower-proxy-ca', validityDays: 3650})
  writePrivateFile(keyPath, ca.keyPem, '--state-dir')
  writePrivateFile(certPath, ca.certPem, '--state-dir')
  return ca
}

async function readText(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch {
    throw invalidInput(`cannot read ${flag} ${path}`)
  }
}

export interface IssueKubeconfigOptions {
  ca: CertificateAndKey
  /** The cluster, as named in the kubeconfig and in the path-routed URL. */
  cluster: string
  /** Front-end URL: https://HOST:PORT/clusters/NAME (path-routed) or https://HOST:PORT (per-cluster port). */
  server: string
  commonName?: string
  validityDays?: number
  /** Test hook: issue a certificate valid only in the past. */
  notAfter?: Date
  notBefore?: Date
}

/**
 * A kubeconfig for a host client of the proxy: a client certificate signed by the proxy CA (which the front ends
 * verify) and the proxy CA as the server's CA. It holds no member credential: the agent adds that in the member.
 */
export async function issueKubeconfig(options: IssueKubeconfigOptions): Promise<string> {
  const client = await issueCertificate(options.ca, {
    commonName: options.commonName ?? 'ksctl-admin',
    usage: 'client',
    validityDays: options.validityDays ?? 365,
    ...(options.notBefore !== undefined && {notBefore: options.notBefore}),
    ...(options.notAfter !== undefined && {notAfter: options.notAfter}),
  })
  const base64 = (text: string): string => Buffer.from(text).toString('base64')
  const user = `${options.cluster}-${options.commonName ?? 'ksctl-admin'}`
  return dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: options.cluster,
        cluster: {server: options.server, 'certificate-authority-data': base64(options.ca.certPem)},
      },
    ],
    users: [
      {
        name: user,
        user: {'client-certificate-data': base64(client.certPem), 'client-key-data': base64(client.keyPem)},
      },
    ],
    contexts: [{name: options.cluster, context: {cluster: options.cluster, user}}],
    'current-context': options.cluster,
  })
}

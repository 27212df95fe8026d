import assert from 'node:assert/strict'

import {ApiException} from '@kubernetes/client-node'

import {errorJson, renderError} from '../../src/cli/base-command.js'
import {toKsctlError} from '../../src/k8s/api-errors.js'
import {Logger} from '../../src/log.js'
import {fingerprint, redact, redactor, Redactor} from '../../src/redact.js'

const jwtSecret = 'Xq7PlantedJwtSecretValue9f8e7d6c'
const towerToken = 'a3f1c9e0b7d24f6a8e1c3b5d7f9a0c2e4b6d8f0a1c3e5b7d9f1a3c5e7b9d1f3a'
const bearer = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl'

describe('redaction', () => {
  it('hides a jwtSecret and a token planted in an API error message, in text and in JSON', () => {
    const local = new Redactor()
    local.register(jwtSecret)
    redactor.register(jwtSecret)
    const body = JSON.stringify({
      kind: 'Status',
      message: `admission webhook denied: jwtSecret ${jwtSecret} does not match; token=${towerToken}; Authorization: Bearer ${bearer}`,
    })
    const error = toKsctlError(
      new ApiException(422, 'Unprocessable', body, {}),
      {
        verb: 'patch',
        object: {resource: 'configmaps', name: 'kubesphere-config', namespace: 'kubesphere-system'},
      },
      'host',
      'https://127.0.0.1:6443',
    )
    const outputs = [renderError(error), JSON.stringify(errorJson(error))]
    for (const output of outputs) {
      assert.ok(!output.includes(jwtSecret), output)
      assert.ok(!output.includes(towerToken), output)
      assert.ok(!output.includes(bearer), output)
      assert.ok(output.includes(`<redacted ${fingerprint(jwtSecret)}>`), output)
      assert.ok(output.includes('kubesphere-system/kubesphere-config'), output)
    }
  })

  it('hides a registered secret in its base64 form too', () => {
    const local = new Redactor()
    local.register(jwtSecret)
    const text = `data: ${Buffer.from(jwtSecret).toString('base64')}`
    assert.ok(!local.redact(text).includes(Buffer.from(jwtSecret).toString('base64')))
  })

  it('recognises secrets it was never told about by their shape', () => {
    const pem = '-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----'
    const cases = [
      [`--token=${towerToken}`, towerToken],
      [`- --token=shorttoken1`, 'shorttoken1'],
      [`jwtSecret: "abcdEFGH1234"`, 'abcdEFGH1234'],
      [`client-key-data: LS0tLS1CRUdJTg==`, 'LS0tLS1CRUdJTg=='],
      [pem, 'MHcCAQEEIBkg'],
      [`token ${towerToken} rejected`, towerToken],
    ] as const
    for (const [text, secret] of cases) assert.ok(!redact(text).includes(secret), `${text} → ${redact(text)}`)
  })

  it('leaves fingerprints, placeholders and prose that mentions a secret alone', () => {
    const texts = [
      'jwtSecret:     sha256:1f2e3d4c',
      'ok    jwtSecret: host and member share jwtSecret sha256:1f2e3d4c',
      '--token=<issued by the proxy when the Cluster is created>',
      'the token in the Cluster differs from the token of the agent',
    ]
    for (const text of texts) assert.equal(redact(text), text)
  })

  it('leaves ordinary text and image digests alone', () => {
    const text =
      'image kubesphere/tower@sha256:' + 'ab'.repeat(32) + ' uid 0f1e2d3c-aaaa-bbbb-cccc-123456789abc'
    assert.equal(redact(text), text)
  })

  it('shows a fingerprint of 8 hex digits that tells two secrets apart', () => {
    assert.match(fingerprint('one'), /^sha256:[0-9a-f]{8}$/)
    assert.notEqual(fingerprint('one'), fingerprint('two'))
  })

  it('redacts every log line, in text and JSON formats', () => {
    const lines: string[] = []
    const logger = new Logger('debug', 'text', {write: (line) => lines.push(line)})
    logger.info(`agent connected with token=${towerToken}`)
    logger.configure('debug', 'json')
    logger.warn('dialing', {authorization: `Bearer ${bearer}`})
    assert.equal(lines.length, 2)
    for (const line of lines) {
      assert.ok(!line.includes(towerToken) && !line.includes(bearer), line)
    }
  })
})

import assert from 'node:assert/strict'

import {dump, load} from 'js-yaml'

import {compareObjects} from '../../src/k8s/object-edit.js'
import {fingerprint, redactObject, revealed} from '../../src/redact.js'
import {
  planted,
  plantedClientKeyData,
  plantedClusterKubeconfig,
  plantedKubeconfig,
} from '../fixtures/planted-credentials.js'

const jwtSecret = 'Zr8PlantedJwtSecretOfTheHost0a1b2c3d'
const towerToken = 'b3f1c9e0b7d24f6a8e1c3b5d7f9a0c2e4b6d8f0a1c3e5b7d9f1a3c5e7b9d1f3c'
const marker = (secret: string) => `<redacted ${fingerprint(secret)}>`

/** Every credential a test planted, for "none of them is left" assertions. */
const credentials = [
  jwtSecret,
  towerToken,
  planted.bearerToken,
  planted.secretValue,
  planted.connectionPassword,
  plantedClientKeyData(),
  plantedClusterKubeconfig(),
  'MHcCAQEEIPlantedClientKeyOfTheMember',
]

function assertNoCredential(value: unknown): void {
  const text = typeof value === 'string' ? value : JSON.stringify(value)
  for (const credential of credentials) assert.ok(!text.includes(credential), `${credential} in ${text}`)
}

function cluster(kubeconfig: string, token = towerToken): object {
  return {
    apiVersion: 'cluster.kubesphere.io/v1alpha1',
    kind: 'Cluster',
    metadata: {name: 'member1', labels: {'cluster.kubesphere.io/group': 'production'}},
    spec: {
      joinFederation: true,
      connection: {type: 'proxy', token, kubeconfig, kubernetesAPIServerPort: 6001},
      config: Buffer.from(`authentication:\n  issuer:\n    jwtSecret: ${jwtSecret}\n`).toString('base64'),
    },
    status: {conditions: [{type: 'Ready', status: 'True'}]},
  }
}

describe('object redaction', () => {
  it("shows a Cluster's kubeconfig, token and config as fingerprints, and every other field as it is", () => {
    const kubeconfig = plantedClusterKubeconfig()
    const redacted = redactObject(cluster(kubeconfig)) as ReturnType<typeof cluster> & {
      spec: {connection: Record<string, unknown>; config: string}
    }
    assertNoCredential(redacted)
    assert.equal(redacted.spec.connection.kubeconfig, marker(kubeconfig))
    assert.equal(redacted.spec.connection.token, marker(towerToken))
    assert.match(redacted.spec.config, /^<redacted sha256:[0-9a-f]{8}>$/)
    assert.deepEqual(
      {...redacted, spec: {...redacted.spec, connection: {}, config: ''}},
      {...cluster(''), spec: {...(cluster('') as {spec: object}).spec, connection: {}, config: ''}},
    )
  })

  it('leaves the object it redacts unchanged', () => {
    const object = cluster(plantedClusterKubeconfig())
    const copy = structuredClone(object)
    redactObject(object)
    assert.deepEqual(object, copy)
  })

  it('shows a changed credential as a different fingerprint in a diff, an unchanged one not at all', () => {
    const otherKubeconfig = Buffer.from(plantedKubeconfig('https://10.0.0.51:6443')).toString('base64')
    const ref = {resource: 'clusters.cluster.kubesphere.io', name: 'member1'}
    const changed = compareObjects(
      'host',
      ref,
      'update Cluster member1',
      cluster(plantedClusterKubeconfig()),
      cluster(otherKubeconfig),
    )
    assert.equal(changed.changed, true)
    assertNoCredential(changed.diff)
    assert.ok(!changed.diff.includes(otherKubeconfig))
    assert.match(changed.diff, new RegExp(`^- +kubeconfig: ${marker(plantedClusterKubeconfig())}$`, 'm'))
    assert.match(changed.diff, new RegExp(`^\\+ +kubeconfig: ${marker(otherKubeconfig)}$`, 'm'))
    assert.doesNotMatch(changed.diff, /^[-+] +token:/m)

    const current = cluster(otherKubeconfig) as {spec: {connection: Record<string, unknown>}}
    const desired = structuredClone(current)
    desired.spec.connection.kubernetesAPIServerPort = 6002
    const beside = compareObjects('host', ref, 'update Cluster member1', current, desired)
    assertNoCredential(beside.diff)
    assert.ok(!beside.diff.includes(otherKubeconfig))
    assert.match(beside.diff, new RegExp(`^ +kubeconfig: ${marker(otherKubeconfig)}$`, 'm'))
    assert.match(beside.diff, /^\+ +kubernetesAPIServerPort: 6002$/m)
  })

  it('shows every value of a Secret as a fingerprint, whether the Secret says its kind or not', () => {
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {name: 'kubesphere-secret', namespace: 'kubesphere-system'},
      type: 'Opaque',
      data: {secret: Buffer.from(planted.secretValue).toString('base64')},
      stringData: {token: planted.bearerToken, other: planted.secretValue},
    }
    const redacted = redactObject(secret) as typeof secret
    assertNoCredential(redacted)
    assert.ok(!JSON.stringify(redacted).includes(secret.data.secret))
    assert.equal(redacted.stringData.other, marker(planted.secretValue))
    assert.equal(redacted.type, 'Opaque')

    const decoded = {metadata: secret.metadata, type: 'Opaque', data: {ca: planted.secretValue}}
    assert.deepEqual(redactObject(decoded, 'secrets'), {...decoded, data: {ca: marker(planted.secretValue)}})
  })

  it("shows the settings of KubeSphere's cluster connection Secret, but not a credential among them", () => {
    const settings = `# set by ksctl\nproxyPublishAddress: http://192.0.2.10:30721\nregistryPassword: ${planted.connectionPassword}\n`
    const secret = {
      metadata: {name: 'tower', namespace: 'kubesphere-system'},
      type: 'config.kubesphere.io/cluster-connection-config',
      data: {'configuration.yaml': settings},
    }
    const redacted = redactObject(secret, 'secrets') as typeof secret
    assert.equal(
      redacted.data['configuration.yaml'],
      settings.replace(planted.connectionPassword, marker(planted.connectionPassword)),
    )
  })

  it("redacts kubesphere.yaml's jwtSecret inside its ConfigMap, keeping the text around it as it is", () => {
    const text = [
      '# KubeSphere configuration',
      'authentication:',
      '  authenticateRateLimiterMaxTries: 10',
      `  jwtSecret: "${jwtSecret}"   # shared with the members`,
      'multicluster:',
      '  clusterRole: host',
      '',
    ].join('\n')
    const configMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {name: 'kubesphere-config'},
      data: {'kubesphere.yaml': text, plain: 'not a document'},
    }
    const redacted = redactObject(configMap) as typeof configMap
    assert.equal(redacted.data['kubesphere.yaml'], text.replace(jwtSecret, marker(jwtSecret)))
    assert.equal(redacted.data.plain, 'not a document')
  })

  it('dumps an embedded document anew when its credential cannot be found in its text', () => {
    const escaped = 'a"b\\c-PlantedEscapedJwtSecret'
    const text = `authentication:\n  jwtSecret: ${JSON.stringify(escaped)}\n`
    assert.equal((load(text) as {authentication: {jwtSecret: string}}).authentication.jwtSecret, escaped)
    const configMap = {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'c'}, data: {'k.yaml': text}}
    const redacted = (redactObject(configMap) as typeof configMap).data['k.yaml']
    assert.ok(!redacted.includes('PlantedEscapedJwtSecret'), redacted)
    assert.deepEqual(load(redacted), {authentication: {jwtSecret: marker(escaped)}})
  })

  it("redacts the ClusterConfiguration's jwtSecret and passwords by their names", () => {
    const installer = {
      apiVersion: 'installer.kubesphere.io/v1alpha1',
      kind: 'ClusterConfiguration',
      metadata: {name: 'ks-installer', namespace: 'kubesphere-system'},
      spec: {
        authentication: {jwtSecret, adminPassword: planted.secretValue},
        multicluster: {clusterRole: 'member'},
        etcd: {monitoring: false, tlsEnable: true},
      },
    }
    const redacted = redactObject(installer) as typeof installer
    assert.deepEqual(redacted.spec, {
      ...installer.spec,
      authentication: {jwtSecret: marker(jwtSecret), adminPassword: marker(planted.secretValue)},
    })
  })

  it("redacts the agent's --token and credential environment variables, and leaves placeholders alone", () => {
    const deployment = (command: string[]) => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {name: 'cluster-agent'},
      spec: {
        template: {
          spec: {
            automountServiceAccountToken: true,
            containers: [
              {
                name: 'agent',
                command,
                args: ['--jwt-secret', jwtSecret, '--name', 'member1'],
                env: [
                  {name: 'AGENT_TOKEN', value: planted.bearerToken},
                  {name: 'HTTPS_PROXY', value: 'http://proxy.example.com:3128'},
                ],
              },
            ],
          },
        },
      },
    })
    const redacted = redactObject(
      deployment(['/agent', '--name=member1', `--token=${towerToken}`, '--token-file=/var/run/token']),
    ) as ReturnType<typeof deployment>
    const container = redacted.spec.template.spec.containers[0]
    assert.deepEqual(container?.command, [
      '/agent',
      '--name=member1',
      `--token=${marker(towerToken)}`,
      '--token-file=/var/run/token',
    ])
    assert.deepEqual(container.args, ['--jwt-secret', marker(jwtSecret), '--name', 'member1'])
    assert.deepEqual(container.env, [
      {name: 'AGENT_TOKEN', value: marker(planted.bearerToken)},
      {name: 'HTTPS_PROXY', value: 'http://proxy.example.com:3128'},
    ])
    assert.equal(redacted.spec.template.spec.automountServiceAccountToken, true)

    const placeholder = ['/agent', '--token=<issued by the proxy when the Cluster is created>']
    assert.deepEqual(
      (redactObject(deployment(placeholder)) as ReturnType<typeof deployment>).spec.template.spec
        .containers[0]?.command,
      placeholder,
    )
  })

  it("redacts a kubeconfig's keys, tokens and auth-provider secrets, and keeps what is not secret", () => {
    const kubeconfig = load(plantedKubeconfig()) as {users: {user: Record<string, unknown>}[]}
    kubeconfig.users.push({
      user: {
        'auth-provider': {config: {'id-token': jwtSecret, 'refresh-token': towerToken, 'client-id': 'ks'}},
        exec: {command: 'helper', env: [{name: 'SERVICE_TOKEN', value: planted.secretValue}]},
        username: 'admin',
        password: planted.connectionPassword,
      },
    })
    const redacted = redactObject(kubeconfig)
    assertNoCredential(redacted)
    const text = dump(redacted)
    assert.match(text, /client-id: ks/)
    assert.match(text, /username: admin/)
    assert.match(text, /client-certificate-data: /)
  })

  it('passes what the user asked to see as it is, and redacts the rest of the same result', () => {
    const manifest = revealed([{kind: 'Deployment', command: [`--token=${towerToken}`]}])
    const result = redactObject({agentManifest: manifest, token: towerToken}) as {
      agentManifest: unknown
      token: string
    }
    assert.equal(result.agentManifest, manifest)
    assert.equal(result.token, marker(towerToken))
  })

  it('redacts registered secrets and secret shapes in any other text it meets', () => {
    const result = redactObject({message: `denied: Authorization: Bearer ${planted.bearerToken}`}) as {
      message: string
    }
    assert.ok(!result.message.includes(planted.bearerToken), result.message)
  })
})

import assert from 'node:assert/strict'

import {denyWrites, type DeniedWrites} from '../testbed/admission.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {bothClusters, run} from './cluster-state.js'
import {testBed} from './hooks.js'

const NAMESPACE = 'kubesphere-system'
const REFUSED = 'refused by the test'

/**
 * Item 23 on real API servers: `--dry-run=server` sends every write of the plan with dryRun=All, so an
 * admission policy that refuses one of them refuses the dry run the way it refuses the real run, while the
 * client preview (which sends no update) does not see it. Nothing changes in any of them.
 */
describe('--dry-run=server meets admission, --dry-run=client does not, real apiservers', function () {
  this.timeout(120_000)

  const installerUpdate: DeniedWrites = {
    group: 'installer.kubesphere.io',
    resource: 'clusterconfigurations',
    operations: ['UPDATE'],
  }
  /** Whether the policy refuses a dry-run update of the ClusterConfiguration on `context` yet. */
  const installerUpdateRefused = (context: string) => async () => {
    const apis = adminApis(testBed().kubeconfigPath, context)
    return apis.custom
      .patchNamespacedCustomObject(
        {
          group: 'installer.kubesphere.io',
          version: 'v1alpha1',
          plural: 'clusterconfigurations',
          namespace: NAMESPACE,
          name: 'ks-installer',
          body: [{op: 'test', path: '/kind', value: 'ClusterConfiguration'}],
          dryRun: 'All',
        },
        {headers: {'Content-Type': 'application/json-patch+json'}} as never,
      )
      .then(
        () => false,
        (error: unknown) => String((error as {body?: unknown}).body ?? error).includes(REFUSED),
      )
  }

  for (const [command, context, args] of [
    ['host init', 'host', ['host', 'init', '--context', 'host', '--name', 'beijing']],
    [
      'member join',
      'member',
      ['member', 'join', 'member1', '--host-context', 'host', '--member-context', 'member', '--apply'],
    ],
  ] as const) {
    it(`${command}: the server dry run fails as the real run, the client one shows the change`, async () => {
      await resetCluster(
        testBed().kubeconfigPath,
        'host',
        command === 'host init' ? 'ks34-none' : 'ks34-host',
      )
      await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-none')
      const lift = await denyWrites(
        testBed().kubeconfigPath,
        context,
        'ksctl-test-deny',
        installerUpdate,
        installerUpdateRefused(context),
      )
      try {
        const before = await bothClusters()
        const real = await run([...args])
        const server = await run([...args, '--dry-run=server'])
        const client = await run([...args, '--dry-run=client'])
        assert.equal(real.exitCode, 1, real.stderr)
        assert.match(real.stderr, new RegExp(REFUSED))
        assert.equal(server.exitCode, 1, server.stderr)
        assert.match(server.stderr, new RegExp(REFUSED))
        assert.equal(
          server.stderr.replace(/dry run/g, ''),
          real.stderr.replace(/dry run/g, ''),
          'the same error as the real run',
        )
        assert.equal(client.exitCode, 0, client.stderr)
        assert.match(
          client.stdout,
          /^would change (host|member): clusterconfigurations\.installer\.kubesphere\.io/m,
        )
        assert.match(client.stdout, /dry run: nothing was changed$/)
        assert.deepEqual(await bothClusters(), before)
      } finally {
        await lift()
      }
    })
  }

  it("member join --dry-run=server without a policy: the diffs are the servers' answers, nothing changes", async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-none')
    const before = await bothClusters()
    const outcome = await run([
      'member',
      'join',
      'member1',
      '--host-context',
      'host',
      '--member-context',
      'member',
      '--apply',
      '--dry-run=server',
    ])
    assert.equal(outcome.exitCode, 0, outcome.stderr)
    assert.match(
      outcome.stdout,
      /^would change member: clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer/m,
    )
    assert.match(
      outcome.stdout,
      /^would change host: clusters\.cluster\.kubesphere\.io member1 \(create Cluster member1\)$/m,
    )
    assert.match(
      outcome.stdout,
      /^would change member: deployments kubesphere-system\/cluster-agent \(create Deployment cluster-agent\)$/m,
    )
    assert.deepEqual(await bothClusters(), before)
  })
})

import {execa} from 'execa'

/** Marks this helper's rules, so that a run that was killed before it could undo them has them removed next time. */
const COMMENT = 'ksctl-test-service-route'
/** Leftovers are those of another run: removed once per process, so that one test can route several Services. */
let leftoversRemoved = false

/**
 * A stand-in for kube-proxy, and only for one Service port: kube-proxy cannot run beside the test bed (it needs a
 * node and its network), so a test that must reach a Service's ClusterIP, as a kubeconfig the tower proxy issued
 * names it, gets a DNAT rule in the nat table's OUTPUT chain that sends CLUSTER-IP:PORT to 127.0.0.1:TARGET-PORT,
 * where the test's proxy listens (kube-proxy's iptables mode writes the same kind of rule, to the pod's address).
 * Needs root and iptables; returns the undo.
 */
export async function routeServicePort(
  clusterIp: string,
  port: number,
  targetPort: number,
): Promise<() => Promise<void>> {
  if (!leftoversRemoved) {
    await removeLeftoverRoutes()
    leftoversRemoved = true
  }
  const rule = [
    ...['OUTPUT', '-d', `${clusterIp}/32`, '-p', 'tcp', '--dport', String(port)],
    ...['-m', 'comment', '--comment', COMMENT],
    ...['-j', 'DNAT', '--to-destination', `127.0.0.1:${String(targetPort)}`],
  ]
  await iptables(['-t', 'nat', '-I', ...rule])
  return async () => {
    await iptables(['-t', 'nat', '-D', ...rule])
  }
}

async function removeLeftoverRoutes(): Promise<void> {
  const listed = await iptables(['-t', 'nat', '-S', 'OUTPUT'])
  for (const line of listed.split('\n')) {
    if (!line.startsWith('-A OUTPUT') || !line.includes(COMMENT)) continue
    // `-S` prints the rule as it was added; `-D` takes the same words (the comment has no spaces).
    await iptables(['-t', 'nat', '-D', ...line.slice('-A '.length).split(' ')])
  }
}

async function iptables(args: string[]): Promise<string> {
  const result = await execa('iptables', ['-w', ...args], {reject: false, stdin: 'ignore'})
  if (result.exitCode !== 0) {
    throw new Error(
      `iptables ${args.join(' ')} failed (${result.stderr.trim()}): the stand-in for kube-proxy needs root and iptables`,
    )
  }
  return result.stdout
}

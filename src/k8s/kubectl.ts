/**
 * A kubectl command line for a suggestion, always with the context it must run against: a suggestion without
 * one runs against whatever context is current, which is often the other cluster. Every suggestion that names
 * kubectl is built here; `context` may be a placeholder such as `<member-context>` when ksctl does not know it.
 */
export function kubectl(context: string, command: string): string {
  return `kubectl --context ${context} ${command}`
}

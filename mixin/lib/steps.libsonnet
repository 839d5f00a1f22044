// Steps by role, as the rules select them. The build checks each name against the values of
// the `step` label in the binary's metric contract.
{
  push: ['check_blob', 'start_upload', 'upload_blob', 'mount_blob', 'push_manifest', 'push_index'],
  // pulls of content already on the registry: golden images and canaries
  oldContent: ['pull_golden_manifest', 'pull_golden_blob', 'pull_canary_manifest', 'pull_canary_blob', 'head_blob'],
  cleanup: ['delete_manifest', 'delete_blob', 'cancel_upload'],
  // an artifact pushed and found again through the referrers API or the referrers tag
  referrers: ['push_artifact', 'update_referrers_tag', 'list_referrers', 'pull_referrers_tag', 'pull_artifact'],
  // a regular expression matching any of `steps`
  re(steps):: std.join('|', steps),
}

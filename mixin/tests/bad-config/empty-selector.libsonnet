// expect: _config.registryProberSelector: "" must be label matchers such as job="registry-prober"
{ _config+:: { registryProberSelector: '' } }

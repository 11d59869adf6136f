// User-assigned managed identity for the function app.
// User-assigned (not system-assigned) so that role assignments can be created BEFORE the
// app exists (no chicken-and-egg on first deploy) and survive an app re-creation.
param name string
param location string
param tags object

resource uami 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = uami.id
output principalId string = uami.properties.principalId
output clientId string = uami.properties.clientId
output name string = uami.name
